"""schemathesis hooks of scripts/api-fuzz.sh.

The API documents language tags as format `bcp47`: valid and registered
BCP-47 tags (the service checks the subtags against the registry, which no
pattern can say). Generate them from a sample of such tags.
"""
import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format(
    "bcp47",
    st.sampled_from(["en", "pt-BR", "de", "fr-CA", "es-419", "zh-Hant-TW", "sr-Latn", "ja"]),
)
