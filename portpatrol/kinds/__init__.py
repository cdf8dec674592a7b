"""One module per kind of check, and the registry that maps schemes and types to them.

The contract of a kind module (`portpatrol/kinds/<name>.py`), every name required unless marked:

    NAME: str                      # the `type` in a config file and in TARGET_CHECK_TYPE: "postgres"
    SCHEMES: tuple[str, ...]       # URL schemes that select it: ("postgres", "postgresql")
    DEFAULT_PORT: int | None       # the port when the address has none (None: the kind has no port)
    SCHEMA: dict[str, Any]         # JSON Schema (draft 2020-12) of the kind's block in a target,
                                   # e.g. `postgres: {query: ..., user: ..., password: ...}`;
                                   # {"type": "object", "additionalProperties": False, ...}
    ENV: dict[str, str]            # environment variable -> key of that block ("POSTGRES_QUERY": "query");
                                   # the env source builds the block from these, every value a string
    SECRET_KEYS: frozenset[str]    # block keys whose values are secrets ("password")

    @dataclass(frozen=True, slots=True)
    class Settings: ...            # everything one attempt needs, typed

    def parse(address: str, block: Mapping[str, Any]) -> Settings
        # The address as written (a URL of one of SCHEMES) and the kind's block (from YAML, already
        # valid against SCHEMA; or from ENV, every value a string). Raises ValueError("what is wrong,
        # and a valid example") for the first problem; the message never holds a secret.
    def secrets(settings: Settings) -> frozenset[str]
        # Every string that must never reach a line (passwords, tokens).
    def describe(settings: Settings) -> str
        # One line for `portpatrol validate`'s plan, without secrets:
        # "127.0.0.1:5432 database=app login=yes tls=prefer".
    def attempt(settings: Settings, deadline: float, bound: float) -> None
        # One attempt: return when ready, raise errors.NotReady(reason) when not. Never runs past
        # `deadline` (a time.monotonic() value); `bound` is the attempt's length, for wording only.
        # Connect with checks.net.connect, talk through wire.Wire, make TLS with tls.context.
        # Imports its heavy dependencies inside, so a run without this kind never loads them.
"""
