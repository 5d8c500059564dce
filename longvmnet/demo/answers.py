"""The demo's query handlers: activity, object and time answers from the memory alone, and find-this-object.

Every answer comes with a note (its calibrated confidence, out-of-domain warnings, how many memory tokens its
range holds, which tokens weighed most), an evidence gallery (those tokens' patches and frames) and its JSON to
download. Drawing (frames, boxes, plots) runs in the worker processes; the model runs here.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from longvmnet.demo import plots, render
from longvmnet.demo.core import Context, Session, friendly
from longvmnet.demo.text import coverage_sentence, esc, evidence_sentence, note, ood_warning, span
from longvmnet.explain import calibration, find
from longvmnet.explain.evidence import answer_with_tokens, coverage, explain
from longvmnet.memory import Memory
from longvmnet.queries import ActivityQuery, ObjectQuery, TimeQuery


class AnswerHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------------------------------ shared
    def _scaling(self, kind: str) -> tuple[float, float]:
        return calibration.scaling(self.ctx.calibration, kind)

    def _calibrated(self, kind: str, probs) -> list[float]:
        return [round(float(p), 4) for p in calibration.rescale(probs, *self._scaling(kind))]

    def _warnings(self, session: Session, crop: np.ndarray | None) -> tuple[list[str], dict]:
        """Out-of-domain warnings for the session's video and the query's crop -> (sentences, figures)."""
        ctx, k = self.ctx, self.ctx.knows
        crop_score = ctx.crop_ood(crop) if crop is not None else None
        lines = [
            ood_warning(session.ood, k.memory, "this video"),
            ood_warning(crop_score, k.crop, "the object crop"),
        ]
        figures = {"video_score": session.ood, "video_threshold": k.memory.threshold if k.memory else None,
                   "crop_score": crop_score, "crop_threshold": k.crop.threshold if k.crop else None}  # fmt: skip
        return [x for x in lines if x], figures

    def _draw(self, session: Session, tokens: list[tuple[float, int, int]]) -> list[tuple[np.ndarray, None]]:
        """A gallery of memory tokens (time, row, col), best first: their patches as one mosaic, then their
        frames with the patches lit; empty when the memory's video is not on the server."""
        video = self.ctx.video(session)
        if not tokens or video is None:
            return []
        mosaic, frames = self.ctx.worker(render.token_frames, str(video), tokens, self.ctx.config.grid,
                                         fps=session.memory.meta.fps, limits=self.ctx.limits.video())  # fmt: skip
        return [(mosaic, None), *[(f, None) for f in frames]]

    def _report(
        self, session: Session, memory: Memory, query, token_logits, crop
    ) -> tuple[list[str], dict, list]:
        """(note lines, JSON fields, evidence gallery) shared by the three kinds."""
        evidence = explain(
            self.ctx.model,
            memory,
            query,
            token_logits,
            k=self.ctx.limits.evidence,
            crops=self.ctx.crop_tokens,
        )
        cov = coverage(memory, query.start, query.end, self.ctx.config.tokens_per_frame)
        warnings, ood = self._warnings(session, crop)
        lines = [
            *warnings,
            coverage_sentence(cov),
            evidence_sentence(evidence, self.ctx.video(session) is not None),
        ]
        fields = {"coverage": cov.to_dict(), "evidence": evidence.to_dict() if evidence else None, "out_of_domain": ood,
                  "calibration": dict(zip(("temperature", "bias"), self._scaling(query.kind)))}  # fmt: skip
        tokens = [(t.time, t.row, t.col) for t in evidence.tokens] if evidence else []
        return lines, fields, self._draw(session, tokens)

    # ------------------------------------------------------------------------------------------ queries
    @friendly("answering the activity query")
    def activity(self, crop: str | None, start, end, session: Session | None):
        """What is done to the crop's object during [start, end] s -> (label {activity: calibrated probability},
        note, evidence gallery, answer JSON file)."""
        ctx = self.ctx
        memory = ctx.memory(session)
        start, end = ctx.time_range(start, end, memory)
        image = ctx.crop(crop)
        query = ActivityQuery(image, start, end)
        ans, logits = answer_with_tokens(ctx.model, memory, query, crops=ctx.crop_tokens)
        names = [a for a, _ in ans.activities]
        probs = dict(zip(names, self._calibrated("activity", [p for _, p in ans.activities])))
        best = max(probs, key=probs.get)
        lines, fields, gallery = self._report(session, memory, query, logits, image)
        head = (
            f"**Most likely: {esc(best)}**, confidence {probs[best]:.0%} (calibrated) in {span(start, end)}."
        )
        data = {"kind": "activity", "start": start, "end": end, "activities": probs,
                "raw": dict(ans.activities)} | fields  # fmt: skip
        return probs, note(head, *lines), gallery, ctx.write_json(session, f"activity-{best}", data)

    @friendly("answering the object query")
    def object(self, activity: str | None, start, end, session: Session | None):
        """Where is the object of `activity` during [start, end] s -> (gallery, clip mp4, note, evidence gallery,
        answer JSON file, answer dict)."""
        ctx, lim = self.ctx, self.ctx.limits
        memory = ctx.memory(session)
        start, end = ctx.time_range(start, end, memory)
        query = ObjectQuery(activity or "", start, end)
        ans, logits = answer_with_tokens(ctx.model, memory, query, crops=ctx.crop_tokens)
        presence = self._calibrated("object", ans.presence)
        present = ans.present()
        confidence = float(np.mean([presence[i] for i in present])) if present else 0.0
        answer = {
            "times": ans.times.tolist(),
            "boxes": ans.boxes.tolist(),
            "presence": presence,
            "present": present,
        }
        lines, fields, evidence = self._report(session, memory, query, logits, None)
        t0, t1 = float(ans.times[present[0]]), float(ans.times[present[-1]])
        head = (f"**The object of '{esc(activity)}'** is boxed on {len(present)} frames, {span(t0, t1)}; "
                f"confidence that they show it {confidence:.0%} (calibrated).")  # fmt: skip
        data = (
            {"kind": "object", "activity": activity, "start": start, "end": end, "confidence": confidence}
            | answer
            | fields
        )
        path = ctx.write_json(session, f"object-{activity}", data)
        video = ctx.video(session)
        if video is None:
            gr.Warning(
                "The video of this memory is not on the server; load it with the memory to see the boxes."
            )
            return [], None, note(head, *lines), evidence, path, answer
        out = session.file("clips", f"{activity}-{start:.0f}-{end:.0f}", keep=2).with_suffix(".mp4")
        gallery, clip, _ = ctx.heavy(render.object_clip, str(video), str(out), ans.times, ans.boxes, presence, present=present,
                                      fps=lim.clip_fps, max_frames=int(lim.clip_seconds * lim.clip_fps),
                                      gallery=lim.gallery, limits=lim.video())  # fmt: skip
        return gallery, clip, note(head, *lines), evidence, path, answer

    @friendly("answering the time query")
    def time(self, activity: str | None, crop: str | None, start, end, session: Session | None):
        """When is `activity` done to the crop's object during [start, end] s -> (timeline PNG, note, evidence
        gallery, answer JSON file, span dict)."""
        ctx = self.ctx
        memory = ctx.memory(session)
        start, end = ctx.time_range(start, end, memory)
        image = ctx.crop(crop)
        query = TimeQuery(activity or "", image, start, end)
        ans, logits = answer_with_tokens(ctx.model, memory, query, crops=ctx.crop_tokens)
        inside = self._calibrated("time", ans.inside_scores)
        a, b = ans.times.index(ans.start), len([t for t in ans.times if t < ans.end])
        confidence = float(np.mean(inside[a : max(b, a + 1)]))
        result = {"start": ans.start, "end": ans.end, "score": ans.score, "confidence": round(confidence, 4),
                  "start_clock": render.clock(ans.start, tenths=True), "end_clock": render.clock(ans.end, tenths=True)}  # fmt: skip
        timeline = plots.timeline(ans.times, inside, (ans.start, ans.end))
        png = plots.save_image(timeline, session.file("plots", f"time-{activity}").with_suffix(".png"))
        lines, fields, evidence = self._report(session, memory, query, logits, image)
        head = (f"**'{esc(activity)}' from {render.clock(ans.start)} to {render.clock(ans.end)}** "
                f"({ans.end - ans.start:.0f} s), confidence {confidence:.0%} (calibrated); the player jumps to its start.")  # fmt: skip
        data = {"kind": "time", "activity": activity, "start": start, "end": end, "answer": result,
                "times": ans.times, "inside": inside} | fields  # fmt: skip
        return png, note(head, *lines), evidence, ctx.write_json(session, f"time-{activity}", data), result

    @friendly("finding the object")
    def find(self, crop: str | None, start, end, session: Session | None):
        """Where the crop's object appears during [start, end] s, by similarity to the memory's tokens ->
        (timeline PNG, note, best-match gallery, answer JSON file, found dict)."""
        ctx = self.ctx
        memory = ctx.memory(session)
        start, end = ctx.time_range(start, end, memory)
        if not 0 <= start < end <= memory.meta.duration_s + 1:
            raise gr.Error(
                f"Choose a range inside the video, 0–{memory.meta.duration_s:.1f} s, that ends after it starts."
            )
        image = ctx.crop(crop)
        vector = find.crop_vector(ctx.model, image, crops=ctx.crop_tokens)
        found = find.find(memory, vector, start=start, end=end, k=ctx.limits.evidence)
        sims = find.similarity(memory, vector)
        matches = [{"index": i, "time": round(float(memory.times[i]), 3), "row": int(memory.rows[i]),
                    "col": int(memory.cols[i]), "similarity": round(float(sims[i]), 4)} for i in found.matches]  # fmt: skip
        warnings, ood = self._warnings(session, image)
        cov = coverage(memory, start, end, ctx.config.tokens_per_frame)
        best = ", ".join(f"{render.clock(m['time'], tenths=True)} ({m['similarity']:.2f})" for m in matches)
        head = f"**Best matches** (time, cosine similarity): {best or 'none in this range'}."
        figures = ctx.find_figures
        measured = (f"Measured on the benchmark's {esc(figures['split'])} videos: {figures['token']:.0%} of the "
                    f"{figures['k']} best tokens lie on the object (chance {figures['token_chance']:.0%})."
                    if figures and figures.get("token") is not None else "")  # fmt: skip
        png = ctx.worker(plots.draw, "find_timeline", session.file("plots", "find").with_suffix(".png"), found.times,
                         found.scores, [m["time"] for m in matches], start=start, end=end)  # fmt: skip
        result = {"times": found.times, "scores": found.scores, "matches": matches}
        data = {
            "kind": "find",
            "start": start,
            "end": end,
            "coverage": cov.to_dict(),
            "out_of_domain": ood,
        } | result
        gallery = self._draw(session, [(m["time"], m["row"], m["col"]) for m in matches])
        text = note(head, *warnings, coverage_sentence(cov), measured)
        return png, text, gallery, ctx.write_json(session, "find", data), result
