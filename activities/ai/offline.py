"""The offline provider: what answers when no other is configured (the embedded default of `make run`).

It is a template, not a model, and says so in `model_used` and in the text itself: deterministic (the
same prompt gives the same answer), instant, free, and never passed off as an AI's answer.
"""

from __future__ import annotations

from temporalio import activity

from activities.ai.offline_templates import PROTOTYPE_TEMPLATES, prototype_template
from models.enums import AIProvider
from models.messages.ai import ModelCall, ModelReply

OFFLINE_MODEL = "offline:template"
OFFLINE_NOTICE = (
    "[Offline template: no AI model was asked. Set OPENAI_API_KEY, AZURE_OPENAI_ENDPOINT and "
    "AZURE_OPENAI_API_KEY, or OLLAMA_HOST to get answers from a model.]"
)
_EXCERPT_CHARS = 200


def template_answer(call: ModelCall) -> str:
    """A prototype step gets its step's template, filled in with the idea (and the requirements' features);
    anything else an acknowledgement of the message."""
    if call.step in PROTOTYPE_TEMPLATES:
        return f"{OFFLINE_NOTICE}\n\n{prototype_template(call.step, call.idea or '', call.requirements or '')}"
    prompt = " ".join(call.prompt.split())
    excerpt = prompt if len(prompt) <= _EXCERPT_CHARS else prompt[: _EXCERPT_CHARS - 1] + "…"
    return "\n\n".join(
        [
            OFFLINE_NOTICE,
            f"Your message ({len(prompt.split())} words) was received: “{excerpt}”",
            "A prototype for an idea like this is usually planned in four steps: the requirements "
            "(who uses it, for what), a plan of screens and data, the code and its tests, and a review.",
        ]
    )


class OfflineActivities:
    @activity.defn(name="offline_chat")
    async def chat(self, call: ModelCall) -> ModelReply:
        return ModelReply(
            tier=AIProvider.OFFLINE,
            text=template_answer(call),
            model_used=OFFLINE_MODEL,
            input_tokens=0,
            output_tokens=0,
            latency_ms=0,
            cost_usd_micros=0,
        )
