"""`python app.py`: its command line, and the options given to `launch()`. Light: no torch, no Gradio."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from longvmnet.demo.page import CSS
from longvmnet.hub import CheckpointError

DESCRIPTION = "Long-VMNet demo: ask questions about a long video from a fixed-size memory."


def launch_options(*, max_upload_mb: float = 500.0, examples: Path | None = None) -> dict:
    """Keyword arguments of demo.launch(): upload cap, no monitoring, only the examples folder served."""
    return {
        "max_file_size": f"{max_upload_mb:g}mb",
        "enable_monitoring": False,
        "show_error": True,  # Gradio's own refusals (a path not uploaded, a wrong file type) read as sentences
        "allowed_paths": [str(examples)] if examples and examples.is_dir() else [],
        "footer_links": ["api"],
        "css": CSS,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--checkpoint", default=os.environ.get("LONGVMNET_CHECKPOINT"),
                        help="save_pretrained folder or Hub repo id (default: $LONGVMNET_CHECKPOINT, "
                        "else checkpoints/longvmnet-synth)")  # fmt: skip
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--max-upload-mb", type=float, default=500.0, help="largest upload (default 500)")
    parser.add_argument("--max-duration-min", type=float, default=60.0, help="longest video (default 60)")
    return parser.parse_args(argv)


def serve(build_demo, argv: list[str] | None = None, *, examples: Path | None = None) -> None:
    """Parse `argv`, build the app with `build_demo` (app.build_demo) and serve it until stopped. A checkpoint
    that cannot be loaded exits with status 2 and one line on stderr."""
    args = parse_args(argv)
    # A stopped Space gets SIGTERM: exit through Python so atexit removes the session folders and workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        demo = build_demo(
            args.checkpoint, max_upload_mb=args.max_upload_mb, max_duration_min=args.max_duration_min
        )
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        **launch_options(max_upload_mb=args.max_upload_mb, examples=examples),
    )
