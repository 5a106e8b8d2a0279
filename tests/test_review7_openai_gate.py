"""Review of the openai transport's gate (dcba803), which now remembers the URLs it found to be
the served one and checks only the method for them.

Differential: over any sequence of requests (methods in any case, the served URL spelled every
way that reaches it and many ways that do not: other hosts, ports, paths, a query, a fragment,
userinfo, percent-encoding, a trailing slash), one gate that has seen the whole sequence
answers each request exactly as a fresh gate, which remembers nothing, answers it alone.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nomyo_native.openai._gate import _REMEMBERED_URLS, Gate

ROUTER = "https://router.example:8443"

SCHEMES = ["https", "HTTPS", "http"]
HOSTS = ["router.example", "ROUTER.example", "user@router.example", "other.example", ""]
PORTS = [":8443", "", ":443", ":08443", ":8444"]
PATHS = [
    "/v1/chat/completions",
    "/V1/chat/completions",
    "/v1/chat/completions/",
    "/v1/chat/%63ompletions",
    "/v1/embeddings",
    "/v1/chat/../chat/completions",
    "",
    "/",
]
TAILS = ["", "?", "?stream=true", "#frag", "?a=1#b"]
METHODS = ["POST", "post", "Post", "GET", "PUT", "DELETE", "OPTIONS", "HEAD"]

urls = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(SCHEMES),
        st.just("://"),
        st.sampled_from(HOSTS),
        st.sampled_from(PORTS),
        st.sampled_from(PATHS),
        st.sampled_from(TAILS),
    ),
)


@st.composite
def sequences(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Requests to a few URLs each (so that a URL comes back with another method), most of
    them spellings that reach the router's completions path."""
    near = st.builds(
        "".join,
        st.tuples(
            st.sampled_from(SCHEMES[:2]),
            st.just("://"),
            st.sampled_from(HOSTS[:3]),
            st.sampled_from(PORTS[:4]),
            st.sampled_from(PATHS[:2]),
            st.sampled_from(TAILS),
        ),
    )
    pool = draw(st.lists(near | urls, min_size=1, max_size=4))
    return draw(st.lists(st.tuples(st.sampled_from(METHODS), st.sampled_from(pool)), max_size=30))


@settings(max_examples=150, deadline=None)
@given(sequence=sequences())
def test_a_gate_that_remembers_answers_as_a_fresh_one(sequence: list[tuple[str, str]]) -> None:
    gate = Gate(ROUTER)
    for method, url in sequence:
        assert gate.check(method, url) == Gate(ROUTER).check(method, url), (method, url)
    assert len(gate._served_urls) <= _REMEMBERED_URLS


def test_the_spellings_of_the_served_url_are_remembered_and_still_checked() -> None:
    # The differential above is only as good as the memory it exercises: these spellings all
    # reach the served URL, so after a POST each is remembered, and each still refuses a GET.
    gate = Gate(ROUTER)
    served = [
        "https://router.example:8443/v1/chat/completions",
        "HTTPS://ROUTER.example:8443/v1/chat/completions",
        "https://router.example:8443/v1/chat/completions?",
        "https://router.example:8443/v1/chat/completions#frag",
        "https://user@router.example:8443/v1/chat/completions",
    ]
    for url in served:
        assert gate.check("POST", url) is None
    assert gate._served_urls == set(served)
    for url in served:
        refusal = gate.check("get", url)
        assert refusal is not None and refusal.status == 405
        assert refusal == Gate(ROUTER).check("get", url)
