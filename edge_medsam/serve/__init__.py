"""A PACS node: series arrive (DICOM C-STORE or an Orthanc change feed), wait in a durable SQLite queue, are
segmented by a bundle on the torch-free runtime and stored back as DICOM-SEG.

    edge-medsam serve run --config node.yaml       # feeders, workers and the health endpoint
    edge-medsam serve status --config node.yaml    # queue counts, failures, throughput
"""
