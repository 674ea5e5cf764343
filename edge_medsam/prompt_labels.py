"""SAM's point labels, the one prompt convention every model, graph and runtime here uses."""

PAD_LABEL, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3
BOX_LABELS = (BOX_TOP_LEFT, BOX_BOTTOM_RIGHT)  # a box is its two corners, in this order
