"""Gradio apps, one per mode: ``make_demo(model)`` factories; nothing launches at import."""
