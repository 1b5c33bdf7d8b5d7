"""The prediction service and its review page (``python -m oxnet.serve --model DIR``).

:func:`oxnet.serve.app.create_app` builds the FastAPI app; importing this package imports nothing heavy.
"""
