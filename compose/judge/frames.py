"""Pictures of one env copy of a task: MuJoCo rendered offscreen, particles drawn with matplotlib,
and a caption strip with the step's reward and cost.

* MuJoCo tasks: ``mujoco.Renderer`` on the task's own model and the copy's ``MjData``, so the
  hazards (the Safe HalfCheetah's obstacle and side walls, the Safe Ants' corridor walls) are in
  the picture as they are in the physics. Headless machines need an offscreen OpenGL: EGL works
  without extra packages on ours, osmesa after ``apt-get install libosmesa6`` (MUJOCO_GL, read
  when mujoco is first imported; `khop render` sets ``egl`` unless the user chose). The default
  ``follow`` camera tracks the robot's root body from a distance that shows what the cost is
  about (:data:`FOLLOW`), unless the model has a camera named ``follow`` (the hand-over's fixed
  side view); any camera of the model (``track`` for Gymnasium's view) can be named.
* particle tasks (mpe-line-control, mpe-circle-control, and PettingZoo envs with an MPE ``world``
  such as mpe-simple-spread): agents as numbered dots on their collision discs, landmarks as
  crosses, the matched targets of the formation tasks as rings; the view widens to keep every
  agent in it.
* anything else (the tabular games) has nothing to draw and is refused with the reason.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from envserver.tasks import VecTask

from .team import JudgeError, first_line

# follow camera per hazard: (distance m, elevation °, azimuth °), chosen by looking at the pictures.
# Behind-left at 8 m, looking 45° ahead, the cheetah's obstacle (10 m ahead at the start) is in view
# from the first frame; from 10 m up behind the ant, 30° ahead, the corridor's folded walls are; 4 m
# side-on (azimuth 90) for robots without a hazard, as Gymnasium's 3–4 m track cameras.
FOLLOW = {"obstacle": (8.0, -20.0, 45.0), "corridor": (10.0, -30.0, 30.0), "": (4.0, -20.0, 90.0)}


class MujocoFrames:
    """Offscreen renders of copy ``e`` of a MuJoCo task."""

    def __init__(self, task: Any, width: int, height: int, camera: str) -> None:
        import mujoco

        m, self.task = task.model, task
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), width)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), height)
        names = [m.camera(i).name for i in range(m.ncam)]
        self.camera: Any
        if camera == "follow" and "follow" in names:  # a scene with its own view (shadow-hand-over: fixed hands)
            self.camera = camera
        elif camera == "follow":
            hazard = task.spec.cost_names[0] if task.spec.cost_names else ""
            self.camera = mujoco.MjvCamera()
            self.camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            self.camera.trackbodyid = 1  # the root body (torso) of every robot model here
            self.camera.distance, self.camera.elevation, self.camera.azimuth = FOLLOW.get(hazard, FOLLOW[""])
        elif camera in names:
            self.camera = camera
        else:
            raise JudgeError(f"--camera {camera!r}: choose follow or one of the model's cameras: "
                             f"{', '.join(n for n in names if n) or '(none)'}")
        try:
            self.renderer = mujoco.Renderer(m, height, width)
        except Exception as err:  # noqa: BLE001 - every backend fails its own way; say which was tried
            import os

            raise JudgeError(f"MuJoCo could not open an offscreen OpenGL context (MUJOCO_GL="
                             f"{os.environ.get('MUJOCO_GL', '')!r}: {first_line(err)}); on a headless machine use "
                             "MUJOCO_GL=egl, or osmesa after apt-get install libosmesa6") from None

    def frame(self, e: int = 0) -> np.ndarray:
        self.renderer.update_scene(self.task.datas[e], camera=self.camera)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


class ParticleFrames:
    """matplotlib pictures of the particles of copy ``e`` in the plane."""

    LIMIT = 1.6  # least half-width of the view: agents start in [−1, 1]², targets stay inside (−1.5, 1.5)²

    def __init__(self, task: Any, width: int, height: int) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.task = task
        dpi = 100
        self.fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)  # headless: draws into memory
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.size = (height, width)
        self.half = self.LIMIT  # grows to keep a wandering agent in view, never shrinks (no zooming back and forth)

    def _scene(self, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(agent positions [N, 2], radii [N], landmarks [L, 2], targets [N, 2] or None)."""
        t = self.task
        if hasattr(t, "pos") and hasattr(t, "landmarks"):  # particles.FormationTask
            n = t.pos.shape[1]
            return t.pos[e], np.full(n, t.agent_size), t.landmarks[e], t._targets()[e]
        world = t.envs[e].unwrapped.world  # an MPE world behind the PettingZoo adapter
        agents = np.array([a.state.p_pos for a in world.agents])
        marks = np.array([lm.state.p_pos for lm in world.landmarks]).reshape(-1, 2)
        return agents, np.array([a.size for a in world.agents]), marks, None

    def frame(self, e: int = 0) -> np.ndarray:
        from matplotlib.patches import Circle

        agents, radii, marks, targets = self._scene(e)
        self.half = max(self.half, 1.1 * float(np.abs(np.concatenate([agents, marks])).max(initial=0.0)))
        ax, aspect = self.ax, self.size[0] / self.size[1]
        ax.clear()
        ax.set_xlim(-self.half / min(aspect, 1.0), self.half / min(aspect, 1.0))
        ax.set_ylim(-self.half * max(aspect, 1.0), self.half * max(aspect, 1.0))
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if targets is not None:
            ax.scatter(targets[:, 0], targets[:, 1], s=80, facecolors="none", edgecolors="gray", lw=1.2)
        ax.scatter(marks[:, 0], marks[:, 1], marker="x", s=60, color="black", lw=2)
        for i, (p, r) in enumerate(zip(agents, radii)):  # the collision disc, or a dot where that is too small
            ax.add_patch(Circle(p, float(r), color=f"C{i % 10}", alpha=0.5))
            ax.scatter([p[0]], [p[1]], s=90, color=f"C{i % 10}")
            ax.text(p[0], p[1], str(i), ha="center", va="center", fontsize=7, color="white")
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        self.fig.clear()


def frames_for(task: VecTask, width: int, height: int, camera: str) -> MujocoFrames | ParticleFrames:
    """The picture maker for ``task``, or a JudgeError saying why it has nothing to draw."""
    if hasattr(task, "model") and hasattr(task, "datas"):
        return MujocoFrames(task, width, height, camera)
    if camera != "follow":
        raise JudgeError(f"--camera is for MuJoCo tasks; {task.spec.name} is drawn in the plane")
    mpe_world = hasattr(task, "envs") and hasattr(getattr(task.envs[0], "unwrapped", None), "world")
    if (hasattr(task, "pos") and hasattr(task, "landmarks")) or mpe_world:
        return ParticleFrames(task, width, height)
    tabular = type(task).__module__.rsplit(".", 1)[-1] in ("coop_game", "matrix_games", "networked_mdp")
    what = "a tabular game (its states are table indices)" if tabular else "a PettingZoo env without an MPE world"
    raise JudgeError(f"{task.spec.name} is {what}: nothing to draw; `khop eval` scores it")


def caption(img: np.ndarray, lines: list[str]) -> np.ndarray:
    """``img`` with ``lines`` written on a dark strip along its top edge."""
    from PIL import Image, ImageDraw, ImageFont

    h = img.shape[0]
    size = max(10, h // 32)
    font = ImageFont.load_default(size=size)
    pic = Image.fromarray(img)
    draw = ImageDraw.Draw(pic, "RGBA")
    strip = (size + 4) * len(lines) + 4
    draw.rectangle((0, 0, img.shape[1], strip), fill=(0, 0, 0, 150))
    for k, line in enumerate(lines):
        draw.text((6, 4 + k * (size + 4)), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(pic)
