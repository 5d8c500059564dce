"""What runs in the browser: the page's CSS and the JavaScript run after an event."""

# A Markdown's progress overlay is transparent: its text would sit on the previous summary. Give it a background.
CSS = "#summary .translucent { background: var(--block-background-fill) !important; }"

# After a time answer the player jumps to the span's start, in the browser alone (API callers have no player).
SEEK_JS = """(span) => {
  const player = document.querySelector('#video video');
  if (player && span && span.start != null) { player.currentTime = span.start; }
}"""
