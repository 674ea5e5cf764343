"""End-user applications built on the torch-free runtime (the browser demo)."""
