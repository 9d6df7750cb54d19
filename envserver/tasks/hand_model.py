"""The two-hand MuJoCo scene of ``shadow-hand-over``: two Shadow hands, a block and its goal.

Why built at run time from the installed package: the hand is Gymnasium-Robotics' Shadow hand
(``gymnasium_robotics/envs/assets/hand/``, Apache-2.0 with the notice "LICENSE.md must be kept
together with this file"), so khop ships none of its files; it reads them where the optional extra
``khop[hands]`` installed them and composes the scene with ``mujoco.MjSpec``. Nothing here needs the
package until a task is built, so ``khop tasks`` lists the hand tasks without it.

The scene (world frame of the assets: x across the hands, y along them, z up):

* **hand 0, the thrower**: ``manipulate_block.xml``'s hand at its shipped pose, palm up, fingers
  towards −y, fingertips at y ≈ 0.77; it starts with the block on its palm.
* **hand 1, the catcher**: the same hand turned π about the vertical line x = 1, y = ``Y_MID``, and
  ``DROP`` lower: palm up, fingers towards +y, reaching 0.10 m under the thrower's fingertips.
* **the block**: ``manipulate_block.xml``'s 5 cm cube (density 567), with its free joint's damping
  set to 0: the asset's 0.01 N·m·s on the rotational degrees of freedom of a 3e-5 kg·m² cube stops
  any spin within ~3 ms, so the block could neither tumble nor roll off a palm (measured: it stays on
  a palm tilted 40°).
* **the goal**: the asset's ``target`` cube (drawn only, no collision; its joint removed, more
  transparent) at the block's start position carried over by the same turn and drop: the same place
  on the other palm. It is a mocap body, so that each copy draws its own goal orientation at reset
  (``hand_over``) and a picture shows it.
* the floor is lowered to ``FLOOR_Z``, below where an episode ends on a fall.

Joint, actuator and finger names are data here (the asset's ``robot0:`` names, checked against the
compiled model by ``tests/test_hand_over.py``), so task specs need no model.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import mujoco
import numpy as np

PREFIXES = ("robot0:", "hand1_robot0:")  # hand 0 keeps the asset's names; hand 1 is attached with a prefix
# the 24 joints of one hand in qpos order (robot.xml); J0 of the four fingers is coupled to J1 by a tendon
HAND_JOINTS = ("WRJ1", "WRJ0", "FFJ3", "FFJ2", "FFJ1", "FFJ0", "MFJ3", "MFJ2", "MFJ1", "MFJ0",
               "RFJ3", "RFJ2", "RFJ1", "RFJ0", "LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0",
               "THJ4", "THJ3", "THJ2", "THJ1", "THJ0")
# the 20 actuated joints in actuator order (shared.xml: position servos robot0:A_<joint>); 20 per hand
# as in Isaac Gym's ShadowHandOver (40 actions for two hands)
HAND_ACTUATED = tuple(j for j in HAND_JOINTS if not (j.endswith("J0") and j[:2] in ("FF", "MF", "RF", "LF")))
# finger groups of one hand, for the second partition: wrist + thumb | first + middle | ring + little
FINGER_GROUPS = (("WRJ1", "WRJ0", "THJ4", "THJ3", "THJ2", "THJ1", "THJ0"),
                 ("FFJ3", "FFJ2", "FFJ1", "FFJ0", "MFJ3", "MFJ2", "MFJ1", "MFJ0"),
                 ("RFJ3", "RFJ2", "RFJ1", "RFJ0", "LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0"))

# dt = 8 × 1/480 s = 1/60 s exactly, the reference's control step (SafePO safepo/utils/config.py: sim dt
# 1/60; ShadowHandOver_Safe_finger.yaml: controlFrequencyInv 1, "60 Hz"); the substep 1/480 s is 4 %
# longer than the asset's 0.002 s, which with 8 substeps would give 0.016 s. Same work per step.
TIMESTEP, FRAME_SKIP = 1 / 480, 8
# ours, chosen by trying fingertip overlaps −0.03 … 0.2 m and drops 0.04 … 0.14 m with a scripted tip-over:
Y_MID = 0.82  # the turn's axis: the catcher's fingertips (y ≈ 0.87) reach 0.10 m past the thrower's (≈ 0.77)
DROP = 0.12  # m the catcher sits below the thrower: its fingers pass under the thrower's tilted fingertips
OBJECT_START = (1.0, 0.87, 0.17)  # on the thrower's palm (the asset's 0.2 less the 3 cm it drops to rest)
FLOOR_Z = -0.3  # ours: out of the way (the asset's is at 0, under the hands)
CAMERA_EYE, CAMERA_AT = (1.6, 0.82, 0.3), (1.0, 0.82, 0.08)  # side-on, both palms; chosen by looking
_ASSET = "manipulate_block.xml"


def asset_dir() -> Path:
    """Where the installed Gymnasium-Robotics keeps the hand XMLs, found without importing it
    (its import loads Gymnasium and prints a deprecation notice); absent: a one-line hint."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or spec.origin is None:
        raise ValueError("the shadow-hand-over tasks need Gymnasium-Robotics' Shadow hand: "
                         "pip install 'khop[hands]' -c constraints.txt")
    return Path(spec.origin).parent / "envs" / "assets" / "hand"


def mirror(pos: tuple[float, float, float]) -> tuple[float, float, float]:
    """A point of the thrower's side carried to the catcher's: turned π about x = 1, y = Y_MID,
    then lowered by DROP."""
    return (2.0 - pos[0], 2 * Y_MID - pos[1], pos[2] - DROP)


GOAL_POS = mirror(OBJECT_START)


def build_spec() -> mujoco.MjSpec:
    """The scene as an ``MjSpec``, before compiling."""
    path = asset_dir() / _ASSET
    spec = mujoco.MjSpec.from_file(str(path))
    spec.body("object").pos = list(OBJECT_START)
    spec.joint("object:joint").damping[0] = 0.0  # free-joint damping is one value for all six dofs
    target = spec.body("target")
    spec.delete(spec.joint("target:joint"))
    target.pos, target.mocap = list(GOAL_POS), True
    spec.material("material:target").rgba[3] = 0.25  # the asset's 0.5 reads as a second block in the pictures
    floor = spec.geom("floor0")
    floor.pos = [floor.pos[0], floor.pos[1], FLOOR_Z]
    frame = spec.worldbody.add_frame(pos=[2.0, 2 * Y_MID, -DROP], euler=[0.0, 0.0, math.pi])
    catcher = mujoco.MjSpec.from_file(str(path))
    frame.attach_body(catcher.body("robot0:hand mount"), PREFIXES[1][:-len("robot0:")], "")
    spec.option.timestep = TIMESTEP  # after attaching: both hands' files say 0.002, which the attach checks
    # the camera `khop render` uses by default (compose/judge/frames.py): both hands and the gap
    spec.worldbody.add_camera(name="follow", pos=list(CAMERA_EYE), quat=list(_look_at(CAMERA_EYE, CAMERA_AT)))
    return spec


def _look_at(eye: tuple[float, ...], at: tuple[float, ...]) -> np.ndarray:
    """The quaternion of a camera at ``eye`` looking at ``at``, horizon level (MuJoCo cameras look
    along their −z with y up)."""
    fwd = np.subtract(at, eye) / np.linalg.norm(np.subtract(at, eye))
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, np.cross(right, fwd), -fwd]).reshape(-1))
    return quat


def compile_model() -> mujoco.MjModel:
    """A fresh ``MjModel`` of the scene (each task owns one)."""
    return build_spec().compile()
