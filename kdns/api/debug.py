"""`/debug/explain?name=&type=[&client=]`: why DNS answers a name what it answers.

The JSON of kdns.pipeline.explain.Explanation, for `kdns explain` and for people with
curl. Behind the API token like every route but the health checks.
"""

from __future__ import annotations

from aiohttp import web

from kdns.api import status
from kdns.api.context import EXPLAIN
from kdns.api.encoding import json_response
from kdns.pipeline.explain import CLIENT


async def explain(request: web.Request) -> web.Response:
    explainer = request.app[EXPLAIN]
    if explainer is None:
        raise web.HTTPNotFound()
    name = request.query.get("name", "")
    if not name:
        raise status.bad_request("the name parameter is required: /debug/explain?name=NAME&type=TYPE")
    try:
        explanation = await explainer(name, request.query.get("type", "A"), request.query.get("client", CLIENT))
    except ValueError as exc:
        raise status.bad_request(str(exc)) from None
    return json_response(explanation.to_dict())
