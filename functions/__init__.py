"""Lambda handlers: ingest, dispatch, finalize. Thin: parse the event, call library code, return."""
