"""The page's fixed parts: its introduction, the tabs' names, its CSS and the JavaScript run after an event.
Light (no Gradio): app.py imports it at start-up."""

INTRO = """# Long-VMNet: questions about long videos from a fixed-size memory
Upload a long video (or pick the example) and press **Build memory**: the model scans it once and keeps a
fixed number of visual tokens. Every question below is then answered from that memory alone, however long the
video, and shows the memory tokens it came from (Gurukar & Kadav, *Long-VMNet: Accelerating Long-Form Video
Understanding via Fixed Memory*). The same steps are an API: see "Use via API" at the bottom."""
TAB_NAMES = {"activity": "What is done to this object? (activity)", "object": "Which object, where? (object)",
             "time": "When? (time)", "find": "Find this object", "memory": "Memory"}  # fmt: skip

# A Markdown's progress overlay is transparent: its text would sit on the previous summary. Give it a background.
CSS = "#summary .translucent { background: var(--block-background-fill) !important; }"

# After a time answer the player jumps to the span's start, in the browser alone (API callers have no player).
SEEK_JS = """(span) => {
  const player = document.querySelector('#video video');
  if (player && span && span.start != null) { player.currentTime = span.start; }
}"""
