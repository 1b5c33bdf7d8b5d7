"""Deployment: exported models (TorchScript, ONNX), one runtime for every backend, DICOM SR output.

Submodules are imported on use (``oxnet.deploy.runtime``, ``oxnet.deploy.export``, ...) so that
importing the package stays cheap.
"""
