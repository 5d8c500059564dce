"""Long-VMNet demo: ask questions about a long video from a fixed-size memory. Layout and event wiring only.

The handlers live in longvmnet/demo/ and the drawing in longvmnet/render.py and longvmnet/plots.py. Run
`python app.py --help`. Heavy imports (Gradio, torch) happen inside the functions: the decoder child processes
re-import this file as `__mp_main__` (multiprocessing "spawn"), and should not pay for them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"
INTRO = """# Long-VMNet: questions about long videos from a fixed-size memory
Upload a long video (or pick the example) and press **Build memory**: the model scans it once and keeps a
fixed number of visual tokens. Every question below is then answered from that memory alone, however long the
video, and shows the memory tokens it came from (Gurukar & Kadav, *Long-VMNet: Accelerating Long-Form Video
Understanding via Fixed Memory*). The same steps are an API: see "Use via API" at the bottom."""
# A Markdown's progress overlay is transparent: its text would sit on the previous summary. Give it a background.
CSS = "#summary .translucent { background: var(--block-background-fill) !important; }"
TAB_NAMES = {"activity": "What is done to this object? (activity)", "object": "Which object, where? (object)",
             "time": "When? (time)", "find": "Find this object", "memory": "Memory"}  # fmt: skip


# After a time answer the player jumps to the span's start, in the browser alone (API callers have no player).
SEEK_JS = """(span) => {
  const player = document.querySelector('#video video');
  if (player && span && span.start != null) { player.currentTime = span.start; }
}"""


def build_demo(model_or_checkpoint=None, *, max_upload_mb: float = 500.0, max_duration_min: float = 60.0,
               session_ttl_s: float = 2 * 3600.0, examples: Path | None = EXAMPLES):  # fmt: skip
    """The Gradio app around a model, or a checkpoint (folder or Hub repo id; None: the default one)."""
    import gradio as gr

    from longvmnet.demo import Demo, DemoLimits, checkpoint_folder, load_demo_model, read_examples

    model = (
        load_demo_model(model_or_checkpoint)
        if model_or_checkpoint is None or isinstance(model_or_checkpoint, (str, os.PathLike))
        else model_or_checkpoint
    )
    limits = DemoLimits(
        max_upload_mb=max_upload_mb, max_duration_min=max_duration_min, session_ttl_s=session_ttl_s
    )
    logic = Demo(model, limits=limits, folder=checkpoint_folder(model))
    logic.worker.warm_up()
    logic.ctx.heavy.warm_up()
    logic.ctx.builder.warm_up()
    mem, ans, frm = logic.memory, logic.answers, logic.frames
    activities = list(model.config.activities)
    ex = read_examples(examples) if examples else None

    def answer_parts(
        name: str, *, png: bool = False, what: str = "Evidence: the memory tokens that weighed most"
    ):
        """Below every answer: its note, its evidence gallery and its downloads."""
        note = gr.Markdown(elem_id=f"{name}-note")
        evidence = gr.Gallery(label=f"{what} (patches, then their frames)", show_label=False, columns=4, height=300,
                              object_fit="contain", format="jpeg", elem_id=f"{name}-evidence")  # fmt: skip
        with gr.Row():
            files = [gr.DownloadButton("Download the answer (JSON)", elem_id=f"{name}-json", size="sm")]
            if png:
                files.append(
                    gr.DownloadButton("Download the timeline (PNG)", elem_id=f"{name}-png", size="sm")
                )
        return note, evidence, *files

    with gr.Blocks(
        title="Long-VMNet", analytics_enabled=False, delete_cache=(1800, int(session_ttl_s))
    ) as demo:
        session = gr.State(None, time_to_live=session_ttl_s, delete_callback=logic.close_session)
        gr.Markdown(INTRO)
        with gr.Accordion("What this model knows", open=True):
            gr.Markdown(logic.knows(), elem_id="knows")
        with gr.Row():
            with gr.Column(scale=3):
                video = gr.Video(
                    label="Video (MP4, MOV, MKV or WebM)", sources=["upload"], height=360, elem_id="video"
                )
                if ex:
                    gr.Examples(
                        [[ex["video"]]], inputs=[video], label="Example video (10 minutes, synthetic)"
                    )
            with gr.Column(scale=2):
                build_btn = gr.Button("Build memory", variant="primary", elem_id="build")
                summary = gr.Markdown("No memory yet: upload a video and press **Build memory**.", min_height=120,
                                      elem_id="summary")  # fmt: skip
                details = gr.JSON(label="Memory", elem_id="details")
                with gr.Accordion("Save or load a memory", open=False):
                    save_btn = gr.Button("Save memory", elem_id="save")
                    saved = gr.File(label="Saved memory", interactive=False, elem_id="saved")
                    memory_file = gr.File(label="Memory to load (.safetensors)", file_types=[".safetensors"],
                                          elem_id="memory-file")  # fmt: skip
                    load_btn = gr.Button("Load memory (with the video above, if any)", elem_id="load")

        gr.Markdown("## Ask the memory")
        with gr.Row():
            start = gr.Number(label="From (s)", value=0.0, elem_id="start")
            end = gr.Number(
                label="To (s)", value=None, info="The end of the video once one is chosen.", elem_id="end"
            )
            activity = gr.Dropdown(activities, value=activities[0], label="Activity", allow_custom_value=True,
                                   elem_id="activity")  # fmt: skip
        with gr.Row():
            with gr.Column():
                crop = gr.File(label="Object crop (PNG, JPEG, WebP or BMP)",
                               file_types=[".png", ".jpg", ".jpeg", ".webp", ".bmp"], elem_id="crop")  # fmt: skip
                crop_view = gr.Image(label="Object", interactive=False, height=160, elem_id="crop-view")
            with gr.Column():
                frame_time = gr.Slider(
                    0, 1, value=0, step=0.1, label="Or draw the object: frame at (s)", elem_id="frame-time"
                )
                frame = gr.Image(label="Click two opposite corners of the object", interactive=False, height=260,
                                 elem_id="frame")  # fmt: skip
        kind = gr.Textbox(visible=False)
        if ex:
            examples_ = gr.Examples(ex["rows"], inputs=[crop, activity, start, end, kind], example_labels=ex["labels"],
                                    label="Example queries on the example video")  # fmt: skip

        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab(TAB_NAMES["activity"], id="activity"):
                act_btn = gr.Button("Ask", variant="primary", elem_id="ask-activity")
                act_out = gr.Label(label="Activities (calibrated probability)", num_top_classes=len(activities),
                                   elem_id="activities")  # fmt: skip
                act_parts = answer_parts("activity")
            with gr.Tab(TAB_NAMES["object"], id="object"):
                obj_btn = gr.Button("Ask", variant="primary", elem_id="ask-object")
                obj_gallery = gr.Gallery(
                    label="Frames with the predicted box",
                    columns=4,
                    height=300,
                    format="jpeg",
                    elem_id="gallery",
                )
                obj_clip = gr.Video(
                    label="The range with the boxes", interactive=False, height=300, elem_id="clip"
                )
                obj_parts = answer_parts("object")
                obj_json = gr.JSON(visible=False)  # every frame's box, for API clients (thousands of values)
            with gr.Tab(TAB_NAMES["time"], id="time"):
                time_btn = gr.Button("Ask", variant="primary", elem_id="ask-time")
                time_plot = gr.Image(
                    label="Is the activity under way?", interactive=False, elem_id="timeline"
                )
                time_parts = answer_parts("time", png=True)
                time_json = gr.JSON(visible=False)  # the span in seconds, for API clients and the player
            with gr.Tab(TAB_NAMES["find"], id="find"):
                find_btn = gr.Button("Find", variant="primary", elem_id="find-object")
                find_plot = gr.Image(
                    label="Where the object appears", interactive=False, elem_id="find-timeline"
                )
                find_parts = answer_parts("find", png=True, what="Best-matching memory tokens")
                find_json = gr.JSON(visible=False)
            with gr.Tab(TAB_NAMES["memory"], id="memory"):
                with gr.Row():
                    mem_time = gr.Number(label="Frame (s)", value=None, info="Empty: the frame with most tokens.",
                                         elem_id="memory-time")  # fmt: skip
                    mem_btn = gr.Button("Show memory", variant="primary", elem_id="show-memory")
                mem_caption = gr.Markdown(elem_id="memory-caption")
                mem_mosaic = gr.Image(
                    label="Memory patches, in time order", interactive=False, format="jpeg", elem_id="mosaic"
                )
                mem_hist = gr.Image(label="Where the memory's tokens come from (tokens per stretch of the video)",
                                    interactive=False, elem_id="histogram")  # fmt: skip
                mem_frame = gr.Image(label="A frame and its patches in memory", interactive=False, height=300,
                                     format="jpeg", elem_id="memory-frame")  # fmt: skip

        # Builds run one at a time, in the builder's process; loads and queries never wait behind them.
        build = dict(concurrency_limit=1, concurrency_id="build")
        built = build_btn.click(mem.build, [video, session], [session, summary, details], api_name="build_memory",
                                show_progress_on=[summary], **build)  # fmt: skip
        loaded = load_btn.click(mem.load, [memory_file, video, session], [session, summary, details],
                                api_name="load_memory", show_progress_on=[summary], concurrency_limit=2)  # fmt: skip
        for event in (built, loaded):
            event.success(
                mem.after_build, [session], [start, end, frame_time, mem_time], api_visibility="private"
            )
        video.change(mem.video_changed, [video], [end, frame_time], api_visibility="private")
        save_btn.click(mem.save, [session], [saved], api_name="save_memory")
        act_btn.click(
            ans.activity, [crop, start, end, session], [act_out, *act_parts], api_name="ask_activity"
        )
        # Answers that draw much (a clip, a mosaic) queue one at a time: the quick ones keep the CPU meanwhile.
        heavy = dict(concurrency_limit=1, concurrency_id="heavy")
        obj_btn.click(ans.object, [activity, start, end, session], [obj_gallery, obj_clip, *obj_parts, obj_json],
                      api_name="ask_object", **heavy)  # fmt: skip
        time_btn.click(ans.time, [activity, crop, start, end, session], [time_plot, *time_parts, time_json],
                       api_name="ask_time").success(None, [time_json], None, js=SEEK_JS)  # fmt: skip
        find_btn.click(ans.find, [crop, start, end, session],
                       [find_plot, *find_parts, find_json], api_name="find_object")  # fmt: skip
        mem_btn.click(mem.show, [mem_time, session], [mem_mosaic, mem_hist, mem_frame, mem_caption],
                      api_name="show_memory", **heavy)  # fmt: skip
        frame_time.release(frm.pick, [video, frame_time, session], [session, frame], api_visibility="private")
        frame.select(frm.click, [session], [session, frame, crop], api_visibility="private")
        crop.change(frm.preview, [crop], [crop_view], api_visibility="private")
        if ex:
            examples_.load_input_event.then(frm.example_tab, [kind], [tabs], api_visibility="private")

    demo.queue(max_size=64, default_concurrency_limit=2)
    demo.logic = logic  # for tests
    return demo


def launch_options(*, max_upload_mb: float = 500.0, examples: Path | None = EXAMPLES) -> dict:
    """Keyword arguments of demo.launch(): upload cap, no monitoring, only the examples folder served."""
    return {
        "max_file_size": f"{max_upload_mb:g}mb",
        "enable_monitoring": False,
        "show_error": True,  # Gradio's own refusals (a path not uploaded, a wrong file type) read as sentences
        "allowed_paths": [str(examples)] if examples and examples.is_dir() else [],
        "footer_links": ["api"],
        "css": CSS,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=os.environ.get("LONGVMNET_CHECKPOINT"),
                        help="save_pretrained folder or Hub repo id (default: $LONGVMNET_CHECKPOINT, "
                        "else checkpoints/longvmnet-synth)")  # fmt: skip
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--max-upload-mb", type=float, default=500.0, help="largest upload (default 500)")
    parser.add_argument("--max-duration-min", type=float, default=60.0, help="longest video (default 60)")
    args = parser.parse_args(argv)

    from longvmnet.hub import CheckpointError

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
        server_name=args.host, server_port=args.port, **launch_options(max_upload_mb=args.max_upload_mb)
    )


if __name__ == "__main__":
    main()
