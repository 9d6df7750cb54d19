"""MJCF for the MuJoCo tasks: the robot (a Gymnasium-derived asset, or the generated many-segment
ant) plus, for the Safe variants, the hazard geometry appended at the END of the world body and of
the actuator list — so the robot's qpos/qvel/ctrl indices are exactly Gymnasium's and the hazard's
own degrees of freedom come last (MACPO put the cheetah's obstacle first; spec §3.4).

Hazards (shared/research/safe-mamujoco.md, "spec §n"):

* **obstacle** (Safe HalfCheetah §3.4, Safe Coupled HalfCheetah §3.5): body ``obj1`` on a slide
  joint ``wall_joint`` (damping 0.2, range ±5000, the robot's default joint class otherwise), box
  geom ``obj_geom`` of half-size (0.1, 2.3, 1.3) starting at world x = 10 that the robot can hit,
  driven by motor ``wall_joint_ac`` (gear 120). Masses as MACPO's settotalmass left them:
  1.58e-4 kg next to one cheetah, 7.9e-5 kg next to the coupled pair. The eight static side walls of
  MACPO's cheetah XML are kept as visual geoms.
* **corridor** (Safe Ant §3.2, Safe ManyAgent Ant §3.3): the folded walls at y = c(x) ± w, six
  boxes of half-size (20, 0.01, 0.7) yawed ±30°. They are **visual only** (no collision, no joint):
  MACPO's walls are 1e-6 kg free bodies that fall over at the start and that the robot shoves aside
  without resistance, so they never constrained the robot; the cost is analytic in both codes.
  Static visual walls keep the robot's physics exactly Gymnasium's and cost no solver time.

The Safety-Gymnasium velocity tasks' speed limit has no geometry: their model is the robot's XML.
"""
from __future__ import annotations

import functools
import math
from importlib import resources

import mujoco
import numpy as np

from .mujoco_catalog import HazardSpec
from .mujoco_robots import Robot

OBSTACLE_X0 = 10.0  # world x of the obstacle geom at qpos 0 (body at 5, geom offset 5)
_OBST_RAW_VOLUME = 0.2 * 4.6 * 2.6  # m^3 of the 0.1 x 2.3 x 1.3 half-size box
# MACPO density 1e-4 scaled by settotalmass 14 / (robot mass at density 1000 + obstacle's)
_CHEETAH_RAW_MASS = 21.183717375253927
OBSTACLE_DENSITY = {1: 1e-4 * 14 / (_CHEETAH_RAW_MASS + 1e-4 * _OBST_RAW_VOLUME),
                    2: 1e-4 * 14 / (2 * _CHEETAH_RAW_MASS + 1e-4 * _OBST_RAW_VOLUME)}
WALL_HALF = (20.0, 0.01, 0.7)
WALL_PIECES = ((0.0, 30.0), (40.0, -30.0), (80.0, 30.0))  # (centre x, yaw°): the folds of c(x)


def asset_text(name: str) -> str:
    return resources.files("envserver").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _append(xml: str, tag: str, text: str) -> str:
    """Insert ``text`` just before the (single) closing ``tag`` of the document."""
    if xml.count(tag) != 1:
        raise RuntimeError(f"expected exactly one {tag} in the robot XML")
    return xml.replace(tag, text + tag)


def _obstacle_xml(n_cheetahs: int) -> tuple[str, str]:
    dens = OBSTACLE_DENSITY[n_cheetahs]
    body = (
        '    <body name="obj1" pos="5 0 0.7">\n'
        '      <joint name="wall_joint" type="slide" axis="1 0 0" pos="0 0 0" damping="0.2" stiffness="0" '
        'range="-5000 5000"/>\n'
        f'      <geom name="obj_geom" type="box" pos="5 0 0.7" size="0.1 2.3 1.3" density="{dens!r}" '
        'conaffinity="1" rgba="0.2 0.4 0.9 1"/>\n'
        '    </body>\n')
    walls = "".join(
        f'    <geom name="wall_{s}{k}" type="box" pos="{50 * k} {4 if s == "l" else -4} 1" size="24.8 0.1 1" '
        'contype="0" conaffinity="0" rgba="0.6 0.6 0.7 0.3"/>\n' for k in range(4) for s in "lr")
    return walls + body, '    <motor gear="120" joint="wall_joint" name="wall_joint_ac"/>\n'


def _corridor_xml(w: float) -> str:
    out = []
    for k, (x0, yaw) in enumerate(WALL_PIECES):
        for side, y in (("l", w), ("r", -w)):
            out.append(f'    <geom name="wall_{side}{k}" type="box" pos="{x0} {y} {WALL_HALF[2]}" euler="0 0 {yaw}" '
                       f'size="{WALL_HALF[0]} {WALL_HALF[1]} {WALL_HALF[2]}" contype="0" conaffinity="0" '
                       'rgba="1 0.5 0.5 0.4"/>\n')
    return "".join(out)


_MANY_SEG0 = """    <body name="torso_0" pos="0 0 0.75">
      <camera name="track" mode="trackcom" pos="0 -3 0.3" xyaxes="1 0 0 0 0 1"/>
      <joint armature="0" damping="0" limited="false" margin="0.01" name="root" pos="0 0 0" type="free"/>
      <body name="front_left_leg_0" pos="0 0 0">
        <geom fromto="0.0 0.0 0.0 0.2 0.2 0.0" name="aux1_geom_0" size="0.08" type="capsule"/>
        <body name="aux1_0" pos="0.2 0.2 0">
          <joint axis="0 0 1" name="hip1_0" pos="0.0 0.0 0.0" range="-30 30" type="hinge"/>
          <geom fromto="0.0 0.0 0.0 0.2 0.2 0.0" name="left_leg_geom_0" size="0.08" type="capsule"/>
          <body name="foot1_0" pos="0.2 0.2 0">
            <joint axis="-1 1 0" name="ankle1_0" pos="0.0 0.0 0.0" range="30 70" type="hinge"/>
            <geom fromto="0.0 0.0 0.0 0.4 0.4 0.0" name="left_ankle_geom_0" size="0.08" type="capsule"/>
          </body>
        </body>
      </body>
      <body name="right_back_leg_0" pos="0 0 0">
        <geom fromto="0.0 0.0 0.0 0.2 -0.2 0.0" name="aux2_geom_0" size="0.08" type="capsule"/>
        <body name="aux2_0" pos="0.2 -0.2 0">
          <joint axis="0 0 1" name="hip2_0" pos="0.0 0.0 0.0" range="-30 30" type="hinge"/>
          <geom fromto="0.0 0.0 0.0 0.2 -0.2 0.0" name="rightback_leg_geom_0" size="0.08" type="capsule"/>
          <body name="foot2_0" pos="0.2 -0.2 0">
            <joint axis="1 1 0" name="ankle2_0" pos="0.0 0.0 0.0" range="30 70" type="hinge"/>
            <geom fromto="0.0 0.0 0.0 0.4 -0.4 0.0" name="second_ankle_geom_0" size="0.08" type="capsule"/>
          </body>
        </body>
      </body>
"""
_MANY_SEG = """      <body name="torso_{i}" pos="-1 0 0">
        <geom density="100" fromto="1 0 0 0 0 0" size="0.1" type="capsule" name="torso_geom_{i}"/>
        <body name="front_right_leg_{i}" pos="0 0 0">
          <geom fromto="0.0 0.0 0.0 0.0 0.2 0.0" name="aux1_geom_{i}" size="0.08" type="capsule"/>
          <body name="aux_2_{i}" pos="0.0 0.2 0">
            <joint axis="0 0 1" name="hip1_{i}" pos="0.0 0.0 0.0" range="-30 30" type="hinge"/>
            <geom fromto="0.0 0.0 0.0 -0.2 0.2 0.0" name="right_leg_geom_{i}" size="0.08" type="capsule"/>
            <body name="foot1_{i}" pos="-0.2 0.2 0">
              <joint axis="1 1 0" name="ankle1_{i}" pos="0.0 0.0 0.0" range="-70 -30" type="hinge"/>
              <geom fromto="0.0 0.0 0.0 -0.4 0.4 0.0" name="right_ankle_geom_{i}" size="0.08" type="capsule"/>
            </body>
          </body>
        </body>
        <body name="back_leg_{i}" pos="0 0 0">
          <geom fromto="0.0 0.0 0.0 0.0 -0.2 0.0" name="aux2_geom_{i}" size="0.08" type="capsule"/>
          <body name="aux2_{i}" pos="0.0 -0.2 0">
            <joint axis="0 0 1" name="hip2_{i}" pos="0.0 0.0 0.0" range="-30 30" type="hinge"/>
            <geom fromto="0.0 0.0 0.0 -0.2 -0.2 0.0" name="back_leg_geom_{i}" size="0.08" type="capsule"/>
            <body name="foot2_{i}" pos="-0.2 -0.2 0">
              <joint axis="-1 1 0" name="ankle2_{i}" pos="0.0 0.0 0.0" range="-70 -30" type="hinge"/>
              <geom fromto="0.0 0.0 0.0 -0.4 -0.4 0.0" name="third_ankle_geom_{i}" size="0.08" type="capsule"/>
            </body>
          </body>
        </body>
"""


def manyagent_ant_xml(n_segs: int) -> str:
    """MACPO's ``manyagent_ant.xml.template`` rendered for ``n_segs`` segments (spec §2.4), without
    its two wall bodies: segment i > 0 is nested in segment i-1 one metre behind it, with no joint
    between them, so the trunk is rigid; RK4, timestep 0.005 (the task steps it 4 times)."""
    if n_segs < 1:
        raise ValueError(f"a many-segment ant needs >= 1 segment, got {n_segs}")
    body = _MANY_SEG0 + "".join(_MANY_SEG.format(i=i) for i in range(1, n_segs))
    body += "      </body>\n" * (n_segs - 1) + "    </body>\n"
    motors = "".join(f'    <motor ctrllimited="true" ctrlrange="-1.0 1.0" joint="{j}_{i}" gear="150"/>\n'
                     for i in range(n_segs) for j in ("hip1", "ankle1", "hip2", "ankle2"))
    return f"""<mujoco model="manyagent_ant_{n_segs}">
  <compiler angle="degree" coordinate="local" inertiafromgeom="true"/>
  <option integrator="RK4" timestep="0.005"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom conaffinity="0" condim="3" density="5.0" friction="1 0.5 0.5" margin="0.01" rgba="0.8 0.6 0.4 1"/>
  </default>
  <asset>
    <texture builtin="gradient" height="100" rgb1="1 1 1" rgb2="0 0 0" type="skybox" width="100"/>
    <texture builtin="checker" height="100" name="texplane" rgb1="0 0 0" rgb2="0.8 0.8 0.8" type="2d" width="100"/>
    <material name="MatPlane" reflectance="0.5" shininess="1" specular="1" texrepeat="60 60" texture="texplane"/>
  </asset>
  <worldbody>
    <light cutoff="100" diffuse="1 1 1" dir="-0 0 -1.3" directional="true" exponent="1" pos="0 0 1.3" specular=".1 .1 .1"/>
    <geom conaffinity="1" condim="3" material="MatPlane" name="floor" pos="30 0 0" rgba="0.2 0.2 0.2 1" size="70 25 40" type="plane"/>
{body}  </worldbody>
  <actuator>
{motors}  </actuator>
</mujoco>
"""


def robot_xml(robot: Robot, hazard: HazardSpec | None = None) -> str:
    """The full MJCF text of a task's model (cached; each task compiles its own MjModel from it)."""
    return _xml(robot.asset, len(robot.globals), hazard)


@functools.lru_cache(maxsize=None)
def _xml(asset: str, n_roots: int, hazard: HazardSpec | None) -> str:
    if asset.startswith("manyagent:"):
        xml = manyagent_ant_xml(int(asset.split(":")[1]))
    else:
        xml = asset_text(asset)
    if hazard is None or hazard.kind == "velocity":  # the speed limit adds nothing to the world
        return xml
    if hazard.kind == "obstacle":
        bodies, motor = _obstacle_xml(n_roots)
        return _append(_append(xml, "</worldbody>", bodies), "</actuator>", motor)
    if hazard.kind == "corridor":
        return _append(xml, "</worldbody>", _corridor_xml(hazard.distance))
    raise ValueError(f"unknown hazard kind {hazard.kind!r}")


def compile_model(robot: Robot, hazard: HazardSpec | None = None) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(robot_xml(robot, hazard))


def corridor_centre(x: float | np.ndarray) -> np.ndarray:
    """c(x), the folded corridor's centre line (spec §3.2): t·x for x < 20, −t(x−40) on (20, 60),
    t(x−80) on (60, 100), 20t elsewhere (also exactly at 20, 60 and 100), with t = tan 30°."""
    t = math.tan(math.radians(30.0))
    x = np.asarray(x, dtype=float)
    return np.where(x < 20, t * x, np.where((x > 20) & (x < 60), -t * (x - 40),
                                            np.where((x > 60) & (x < 100), t * (x - 80), 20 * t)))
