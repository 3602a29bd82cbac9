"""The replication topology as a picture: the master on top, an arrow to each node
that replicates from it (no I/O here; the template draws the SVG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 360.0
BOX_W, BOX_H = 112.0, 42.0
TOP = 8.0
ROW = 78.0
PER_ROW = 3


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    id: int
    ip: str
    role: str
    state: str

    @property
    def cx(self) -> float:
        return self.x + BOX_W / 2


@dataclass(frozen=True)
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    joining: bool


@dataclass(frozen=True)
class Picture:
    boxes: list[Box]
    arrows: list[Arrow]
    width: float
    height: float
    box_w: float = BOX_W
    box_h: float = BOX_H


def _box(node: Mapping[str, Any], x: float, y: float) -> Box:
    return Box(x, y, int(node["id"]), str(node.get("ip") or "no address yet"),
               str(node.get("role") or "none"), str(node.get("state") or "?"))


def picture(nodes: Sequence[Mapping[str, Any]],
            readers: Sequence[Mapping[str, Any]] = ()) -> Picture | None:
    """The master and the other nodes in rows under it; None without nodes."""
    if not nodes:
        return None
    lag = {r.get("id"): r.get("seconds_behind_master") for r in readers}
    master = next((n for n in nodes if n.get("role") == "master"), None)
    others = [n for n in nodes if n is not master]
    boxes: list[Box] = []
    arrows: list[Arrow] = []
    top: Box | None = None
    y = TOP
    if master is not None:
        top = _box(master, (WIDTH - BOX_W) / 2, y)
        boxes.append(top)
        y += ROW
    for start in range(0, len(others), PER_ROW):
        row = others[start:start + PER_ROW]
        gap = (WIDTH - len(row) * BOX_W) / (len(row) + 1)
        for index, node in enumerate(row):
            box = _box(node, gap + index * (BOX_W + gap), y)
            boxes.append(box)
            if top is not None:
                seconds = lag.get(box.id)
                label = f"{seconds} s" if seconds is not None else ""
                arrows.append(Arrow(top.cx, top.y + BOX_H, box.cx, box.y - 3, label,
                                    box.role != "slave" or box.state != "RUNNING"))
        y += ROW
    height = (y - ROW + BOX_H + TOP) if boxes else TOP
    return Picture(boxes, arrows, WIDTH, height)
