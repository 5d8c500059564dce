"""Long-VMNet demo: ask questions about a long video from a fixed-size memory. Layout and event wiring only.

The handlers live in longvmnet/demo/ (its __init__ lists them), the drawing in longvmnet/demo/render.py and
plots.py, the command line and launch options in longvmnet/demo/launch.py. Run `python app.py --help`. Heavy
imports (Gradio, torch) happen inside build_demo: the decoder child processes re-import this file as
`__mp_main__` (multiprocessing "spawn"), and should not pay for them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import SimpleNamespace

from longvmnet.demo import launch
from longvmnet.demo.page import INTRO, SEEK_JS, TAB_NAMES

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"


def build_demo(model_or_checkpoint=None, *, max_upload_mb: float = 500.0, max_duration_min: float = 60.0,
               session_ttl_s: float = 2 * 3600.0, examples: Path | None = EXAMPLES):  # fmt: skip
    """The Gradio app around a model, or a checkpoint (folder or Hub repo id; None: the default one)."""
    import gradio as gr

    from longvmnet.demo.core import DemoLimits
    from longvmnet.demo.frames import read_examples
    from longvmnet.demo.logic import Demo

    limits = DemoLimits(max_upload_mb=max_upload_mb, max_duration_min=max_duration_min, session_ttl_s=session_ttl_s)  # fmt: skip
    logic = Demo.start(model_or_checkpoint, limits=limits)
    ex = read_examples(examples) if examples else None
    with gr.Blocks(title="Long-VMNet", analytics_enabled=False, delete_cache=(1800, int(session_ttl_s))) as demo:  # fmt: skip
        ui = layout(logic, ex, session_ttl_s)
        wire(ui, logic, ex)
    demo.queue(max_size=64, default_concurrency_limit=2)
    demo.logic = logic  # for tests
    return demo


def layout(logic, ex: dict | None, session_ttl_s: float) -> SimpleNamespace:
    """The page's components (inside gr.Blocks), returned by name for `wire`."""
    import gradio as gr

    from longvmnet.demo import widgets

    c, activities = SimpleNamespace(), list(logic.ctx.model.config.activities)
    c.session = gr.State(None, time_to_live=session_ttl_s, delete_callback=logic.close_session)
    gr.Markdown(INTRO)
    with gr.Accordion("What this model knows", open=True):
        gr.Markdown(logic.knows(), elem_id="knows")
    with gr.Row():
        with gr.Column(scale=3):
            c.video = gr.Video(label="Video (MP4, MOV, MKV or WebM)", sources=["upload"], height=360, elem_id="video")  # fmt: skip
            if ex:
                gr.Examples([[ex["video"]]], inputs=[c.video], label="Example video (10 minutes, synthetic)")
        with gr.Column(scale=2):
            c.build = gr.Button("Build memory", variant="primary", elem_id="build")
            c.summary = gr.Markdown("No memory yet: upload a video and press **Build memory**.", min_height=120,
                                    elem_id="summary")  # fmt: skip
            c.details = gr.JSON(label="Memory", elem_id="details")
            c.save, c.saved, c.memory_file, c.load = widgets.save_load()

    gr.Markdown("## Ask the memory")
    with gr.Row():
        c.start = gr.Number(label="From (s)", value=0.0, elem_id="start")
        c.end = gr.Number(label="To (s)", value=None, info="The end of the video once one is chosen.", elem_id="end")  # fmt: skip
        c.activity = gr.Dropdown(activities, value=activities[0], label="Activity", allow_custom_value=True,
                                 elem_id="activity")  # fmt: skip
    c.crop, c.crop_view, c.frame_time, c.frame = widgets.object_inputs()
    c.kind = gr.Textbox(visible=False)
    if ex:
        c.examples = gr.Examples(ex["rows"], inputs=[c.crop, c.activity, c.start, c.end, c.kind],
                                 example_labels=ex["labels"], label="Example queries on the example video")  # fmt: skip

    with gr.Tabs(elem_id="tabs") as c.tabs:
        with gr.Tab(TAB_NAMES["activity"], id="activity"):
            c.ask_activity = gr.Button("Ask", variant="primary", elem_id="ask-activity")
            c.activity_out = [gr.Label(label="Activities (calibrated probability)", num_top_classes=len(activities),
                                       elem_id="activities"), *widgets.answer_parts("activity")]  # fmt: skip
        with gr.Tab(TAB_NAMES["object"], id="object"):
            c.ask_object = gr.Button("Ask", variant="primary", elem_id="ask-object")
            # the hidden JSON holds every frame's box, for API clients (thousands of values)
            c.object_out = [gr.Gallery(label="Frames with the predicted box", columns=4, height=300, format="jpeg",
                                       elem_id="gallery"),
                            gr.Video(label="The range with the boxes", interactive=False, height=300, elem_id="clip"),
                            *widgets.answer_parts("object"),
                            gr.JSON(visible=False)]  # fmt: skip
        with gr.Tab(TAB_NAMES["time"], id="time"):
            c.ask_time = gr.Button("Ask", variant="primary", elem_id="ask-time")
            time_plot = widgets.timeline("Is the activity under way?", "timeline")
            c.time_json = gr.JSON(visible=False)  # the span in seconds, for API clients and the player
            c.time_out = [time_plot, *widgets.answer_parts("time"), c.time_json]
        with gr.Tab(TAB_NAMES["find"], id="find"):
            c.find = gr.Button("Find", variant="primary", elem_id="find-object")
            c.find_out = [widgets.timeline("Where the object appears", "find-timeline"),
                          *widgets.answer_parts("find", what="Best-matching memory tokens"),
                          gr.JSON(visible=False)]  # fmt: skip
        with gr.Tab(TAB_NAMES["memory"], id="memory"):
            with gr.Row():
                c.memory_time = gr.Number(label="Frame (s)", value=None, info="Empty: the frame with most tokens.",
                                          elem_id="memory-time")  # fmt: skip
                c.show = gr.Button("Show memory", variant="primary", elem_id="show-memory")
            c.memory_out = widgets.memory_views()
    return c


def wire(c: SimpleNamespace, logic, ex: dict | None) -> None:
    """Which handler each event calls (inside gr.Blocks)."""
    mem, ans, frm = logic.memory, logic.answers, logic.frames
    # Builds run one at a time, in the builder's process; loads and queries never wait behind them.
    build = dict(concurrency_limit=1, concurrency_id="build")
    memory_state = [c.session, c.summary, c.details]
    built = c.build.click(mem.build, [c.video, c.session], memory_state, api_name="build_memory",
                          show_progress_on=[c.summary], **build)  # fmt: skip
    loaded = c.load.click(mem.load, [c.memory_file, c.video, c.session], memory_state, api_name="load_memory",
                          show_progress_on=[c.summary], concurrency_limit=2)  # fmt: skip
    for event in (built, loaded):
        event.success(mem.after_build, [c.session], [c.start, c.end, c.frame_time, c.memory_time],
                      api_visibility="private")  # fmt: skip
    c.video.change(mem.video_changed, [c.video], [c.end, c.frame_time], api_visibility="private")
    c.save.click(mem.save, [c.session], [c.saved], api_name="save_memory")
    c.ask_activity.click(ans.activity, [c.crop, c.start, c.end, c.session], c.activity_out, api_name="ask_activity")  # fmt: skip
    # Answers that draw much (a clip, a mosaic) queue one at a time: the quick ones keep the CPU meanwhile.
    heavy = dict(concurrency_limit=1, concurrency_id="heavy")
    c.ask_object.click(ans.object, [c.activity, c.start, c.end, c.session], c.object_out, api_name="ask_object",
                       **heavy)  # fmt: skip
    c.ask_time.click(ans.time, [c.activity, c.crop, c.start, c.end, c.session], c.time_out,
                     api_name="ask_time").success(None, [c.time_json], None, js=SEEK_JS)  # fmt: skip
    c.find.click(ans.find, [c.crop, c.start, c.end, c.session], c.find_out, api_name="find_object")
    c.show.click(mem.show, [c.memory_time, c.session], c.memory_out, api_name="show_memory", **heavy)
    c.frame_time.release(frm.pick, [c.video, c.frame_time, c.session], [c.session, c.frame], api_visibility="private")  # fmt: skip
    c.frame.select(frm.click, [c.session], [c.session, c.frame, c.crop], api_visibility="private")
    c.crop.change(frm.preview, [c.crop], [c.crop_view], api_visibility="private")
    if ex:
        c.examples.load_input_event.then(frm.example_tab, [c.kind], [c.tabs], api_visibility="private")


launch_options = functools.partial(launch.launch_options, examples=EXAMPLES)


def main(argv: list[str] | None = None) -> None:
    launch.serve(build_demo, argv, examples=EXAMPLES)


if __name__ == "__main__":
    main()
