"""Answer of GET /healthz."""

from __future__ import annotations

from manager_api.api.schemas.answers.common import Answer, one_of


class LivenessAnswer(Answer):
    status = one_of(["ok"])
