"""Scrapes a /metrics URL and parses it with the Prometheus project's own
Python client (the OpenMetrics parser), as a Prometheus server would read
it: a format error fails here. Prints one JSON object mapping each sample,
written `name{label="value",...}` with labels sorted, to its value."""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    content_type = response.headers["Content-Type"]
    text = response.read().decode()
if not content_type.startswith("application/openmetrics-text"):
    sys.exit(f"unexpected Content-Type: {content_type}")
samples = {}
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(samples))
