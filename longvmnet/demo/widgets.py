"""Groups of Gradio components that the page's layout (app.py) repeats."""

from __future__ import annotations

import gradio as gr


def answer_parts(name: str, *, what: str = "Evidence: the memory tokens that weighed most"):
    """Below every answer: its note, its evidence gallery and the answer's JSON download. A timeline is
    downloaded from its own image's button (one transfer per answer, not two)."""
    note = gr.Markdown(elem_id=f"{name}-note")
    evidence = gr.Gallery(label=f"{what} (patches, then their frames)", show_label=False, columns=4, height=300,
                          object_fit="contain", format="jpeg", elem_id=f"{name}-evidence")  # fmt: skip
    json_file = gr.DownloadButton("Download the answer (JSON)", elem_id=f"{name}-json", size="sm")
    return note, evidence, json_file


def timeline(label: str, name: str):
    """A timeline answer's image, with its own download (PNG) and full-screen buttons."""
    return gr.Image(label=label, interactive=False, buttons=["download", "fullscreen"], elem_id=name)


def save_load():
    """The "Save or load a memory" accordion: save button, saved file, memory file to load, load button."""
    with gr.Accordion("Save or load a memory", open=False):
        save = gr.Button("Save memory", elem_id="save")
        saved = gr.File(label="Saved memory", interactive=False, elem_id="saved")
        memory_file = gr.File(label="Memory to load (.safetensors)", file_types=[".safetensors"],
                              elem_id="memory-file")  # fmt: skip
        load = gr.Button("Load memory (with the video above, if any)", elem_id="load")
    return save, saved, memory_file, load


def object_inputs():
    """The object of a query, two ways: a crop file (with its preview), or a box drawn on a chosen frame.
    Returns crop, crop preview, frame time slider, frame image."""
    with gr.Row():
        with gr.Column():
            crop = gr.File(label="Object crop (PNG, JPEG, WebP or BMP)",
                           file_types=[".png", ".jpg", ".jpeg", ".webp", ".bmp"], elem_id="crop")  # fmt: skip
            crop_view = gr.Image(label="Object", interactive=False, height=160, elem_id="crop-view")
        with gr.Column():
            frame_time = gr.Slider(0, 1, value=0, step=0.1, label="Or draw the object: frame at (s)",
                                   elem_id="frame-time")  # fmt: skip
            frame = gr.Image(label="Click two opposite corners of the object", interactive=False, height=260,
                             elem_id="frame")  # fmt: skip
    return crop, crop_view, frame_time, frame


def memory_views() -> list:
    """The memory tab's outputs, in `MemoryHandlers.show`'s order: mosaic, histogram, frame, caption."""
    caption = gr.Markdown(elem_id="memory-caption")
    mosaic = gr.Image(
        label="Memory patches, in time order", interactive=False, format="jpeg", elem_id="mosaic"
    )
    histogram = gr.Image(label="Where the memory's tokens come from (tokens per stretch of the video)",
                         interactive=False, elem_id="histogram")  # fmt: skip
    frame = gr.Image(label="A frame and its patches in memory", interactive=False, height=300, format="jpeg",
                     elem_id="memory-frame")  # fmt: skip
    return [mosaic, histogram, frame, caption]
