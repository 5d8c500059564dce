"""The demo's frame handlers: draw an object's box on a frame to make a crop, preview a crop, move the player,
and switch to the tab of a chosen example."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import gradio as gr

from longvmnet.demo import render
from longvmnet.demo.core import Context, Session, error, friendly

TABS = ("activity", "object", "time", "find", "memory")  # the tabs' ids in app.py


class FrameHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @friendly("showing the frame")
    def pick(self, video: str | None, frame_time, session: Session | None):
        """The frame at `frame_time` of the uploaded video (else the session's) to draw a box on."""
        ctx = self.ctx
        src = Path(video) if video else ctx.video(session)
        if src is None:
            raise error("Upload a video first, then pick a frame to draw the object's box on.")
        session = ctx.session(session)
        _, frame = ctx.worker(render.frame_at, str(ctx.upload(str(src), "a video")),
                              ctx.seconds(frame_time, "frame time", 0.0), limits=ctx.limits.video())  # fmt: skip
        session.picked, session.corner = frame, None
        return session, frame

    @friendly("drawing the box")
    def click(self, session: Session | None, evt: gr.SelectData):
        """First click: a corner; second: the crop between the two corners -> (session, frame, crop file)."""
        if session is None or session.picked is None:
            raise error("Pick a frame first, then click two opposite corners of the object.")
        x, y = float(evt.index[0]), float(evt.index[1])
        if session.corner is None:
            session.corner = (x, y)
            return session, render.mark_point(session.picked, (x, y)), gr.skip()
        a, session.corner = session.corner, None
        crop = render.crop_box(session.picked, a, (x, y))
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            raise error("The box is too small; click two opposite corners around the object.")
        h, w = session.picked.shape[:2]
        box = [min(a[0], x) / w, min(a[1], y) / h, max(a[0], x) / w, max(a[1], y) / h]
        crops = session.folder / "crops"
        crops.mkdir(exist_ok=True)
        path = render.save_png(crop, crops / f"crop-{uuid.uuid4().hex[:8]}.png")
        return session, render.draw_boxes(session.picked, [box]), path

    @friendly("reading the crop")
    def preview(self, crop: str | None):
        """The crop image as the model will see it (opened with explicit formats and a pixel limit)."""
        return self.ctx.crop(crop) if crop else None

    @staticmethod
    def example_tab(kind: str | None):
        """An example was chosen: show the tab of its kind of query."""
        return gr.Tabs(selected=kind) if kind in TABS else gr.skip()


def read_examples(folder: Path) -> dict | None:
    """assets/examples/queries.json as gr.Examples rows [crop, activity, start, end, kind] with absolute
    paths, their labels and the example video; None when the examples are missing."""
    try:
        spec = json.loads((folder / "queries.json").read_text())
        video = folder / spec["video"]
        rows = [[str(folder / q["crop"]) if q.get("crop") else None, q.get("activity"), q["start"], q["end"],
                 q["type"]] for q in spec["queries"]]  # fmt: skip
        labels = [q.get("label", q["type"]) for q in spec["queries"]]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return {"video": str(video), "rows": rows, "labels": labels} if video.is_file() else None
