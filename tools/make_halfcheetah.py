#!/usr/bin/env python3
"""Generate HalfCheetah transition datasets: data/halfcheetah/{random,scripted}.csv.

Environment: gymnasium "HalfCheetah-v5" (MuJoCo physics, default settings:
frame_skip 5, dt 0.05 s, reset_noise_scale 0.1, x position excluded from the
observation), so the state s is 17-dimensional and the action a 6-dimensional
(torques in [-1, 1] for bthigh, bshin, bfoot, fthigh, fshin, ffoot).
No rendering is done; no GPU or display is needed.

Policies (both seeded, see --seed):
  random    a_t ~ Uniform[-1, 1]^6, i.i.d. per step, from
            numpy.random.default_rng(seed).
  scripted  sinusoidal open-loop gait, per joint j = 0..5:
                a_t[j] = clip(0.8 * sin(omega * t + phase_j) + 0.1 * eps_tj, -1, 1)
            with t = 0, 1, 2, ... the step index inside the episode and
            eps_tj ~ N(0, 1) i.i.d.  The reference gait is
                OMEGA0 = 0.57 rad/step (1.8 Hz at dt = 0.05 s),
                PHASE0 = (1.07, 1.49, 3.85, 3.78, 2.40, 0.06) rad,
            picked as the fastest forward gait (about 1.6 m/s) among 300
            random (omega, phase) draws; each episode jitters it once:
                omega   = OMEGA0 * Uniform[0.9, 1.1],
                phase_j = PHASE0_j + Uniform[-0.3, 0.3]  (per joint),
            which gives episodes from about standing still to running at
            about 1.4 m/s.  All draws come from numpy.random.default_rng(seed + 1).
Episode k of policy p starts from env.reset(seed=seed_p * 100000 + k), with
seed_random = seed and seed_scripted = seed + 1, and runs exactly --steps steps
(HalfCheetah never terminates early).

CSV columns (header row, one row per transition, rows in episode order, episode
k occupying rows k*steps .. (k+1)*steps - 1):
  s_0..s_16    state s_t (the observation)
  a_0..a_5     action a_t actually applied
  ds_0..ds_16  target: ds = s_{t+1} - s_t, computed in float64 before
               rounding (the next state is s_{t+1} = s + ds up to rounding)
Every number is printed with 6 significant digits ("%.6g"; "-0" written as
"0"), so re-running with the same package versions gives byte-identical files.

After writing, data/SHA256SUMS is regenerated over every CSV under data/.

Usage:  python3 tools/make_halfcheetah.py [--episodes 10] [--steps 1000] [--seed 0]
Needs:  pip install mujoco gymnasium numpy
"""
import argparse
import os
import sys

import numpy as np

from sha256sums import write_sha256sums  # tools/sha256sums.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
ENV_ID = "HalfCheetah-v5"
OBS_DIM, ACT_DIM = 17, 6
AMPLITUDE, NOISE_STD = 0.8, 0.1
OMEGA0 = 0.57
PHASE0 = (1.07, 1.49, 3.85, 3.78, 2.40, 0.06)
OMEGA_JITTER, PHASE_JITTER = 0.1, 0.3


def fmt(v):
    s = "%.6g" % v
    return "0" if s == "-0" else s


class RandomPolicy:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def start_episode(self):
        pass

    def act(self, t, obs):
        return self.rng.uniform(-1.0, 1.0, size=ACT_DIM)


class SinePolicy:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def start_episode(self):
        self.omega = OMEGA0 * self.rng.uniform(1.0 - OMEGA_JITTER, 1.0 + OMEGA_JITTER)
        self.phase = np.asarray(PHASE0) + self.rng.uniform(-PHASE_JITTER, PHASE_JITTER,
                                                           size=ACT_DIM)

    def act(self, t, obs):
        a = AMPLITUDE * np.sin(self.omega * t + self.phase)
        a = a + NOISE_STD * self.rng.standard_normal(ACT_DIM)
        return np.clip(a, -1.0, 1.0)


def collect(policy, reset_seed_base, episodes, steps):
    import gymnasium as gym
    env = gym.make(ENV_ID, max_episode_steps=steps)
    assert env.observation_space.shape == (OBS_DIM,), env.observation_space
    assert env.action_space.shape == (ACT_DIM,), env.action_space
    rows = []
    for k in range(episodes):
        obs, _ = env.reset(seed=reset_seed_base + k)
        obs = np.asarray(obs, dtype=np.float64)
        policy.start_episode()
        for t in range(steps):
            a = np.asarray(policy.act(t, obs), dtype=np.float64)
            nxt, _r, terminated, truncated, _info = env.step(a)
            nxt = np.asarray(nxt, dtype=np.float64)
            if not np.all(np.isfinite(nxt)):
                raise SystemExit("non-finite state in episode %d step %d" % (k, t))
            rows.append(np.concatenate([obs, a, nxt - obs]))
            obs = nxt
            if terminated or (truncated and t != steps - 1):
                raise SystemExit("episode %d ended early at step %d" % (k, t))
    env.close()
    return rows


def write_csv(path, rows):
    header = (["s_%d" % i for i in range(OBS_DIM)] + ["a_%d" % i for i in range(ACT_DIM)]
              + ["ds_%d" % i for i in range(OBS_DIM)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="\n") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(fmt(v) for v in r) + "\n")
    os.replace(tmp, path)
    print("%s: %d rows, %d columns, %d bytes" % (os.path.relpath(path, ROOT), len(rows),
                                                  len(header), os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=10, help="episodes per policy")
    ap.add_argument("--steps", type=int, default=1000, help="steps per episode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=os.path.join(DATA, "halfcheetah"))
    ap.add_argument("--only", choices=["random", "scripted"])
    args = ap.parse_args()
    import gymnasium
    import mujoco
    print("gymnasium %s, mujoco %s, numpy %s, env %s"
          % (gymnasium.__version__, mujoco.__version__, np.__version__, ENV_ID))
    jobs = {
        "random": (RandomPolicy(args.seed), args.seed),
        "scripted": (SinePolicy(args.seed + 1), args.seed + 1),
    }
    for name, (policy, seed_p) in jobs.items():
        if args.only and name != args.only:
            continue
        rows = collect(policy, seed_p * 100000, args.episodes, args.steps)
        write_csv(os.path.join(args.out_dir, name + ".csv"), rows)
    if os.path.abspath(args.out_dir).startswith(os.path.abspath(DATA) + os.sep):
        write_sha256sums(DATA)


if __name__ == "__main__":
    sys.exit(main())
