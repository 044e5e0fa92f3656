"""One module per tab: pure handler functions first, then `build()` which lays out the Gradio components."""
