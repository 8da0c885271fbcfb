#!/usr/bin/env python3
"""Renders deploy/helm/shadowroute without helm and prints the manifests (deploy/helm/rendered.yaml).

The chart's templates use only these forms, and this renderer supports only these:

    {{ .Values.a.b }}                      a scalar value
    {{ .Values.a.b | quote }}              a value as a double-quoted string
    {{ .Release.Name }}                    the release name (default: shadowroute)
    {{ .Chart.AppVersion }}                appVersion from Chart.yaml
    {{- toYaml .Values.a.b | nindent N }}  a map or list as block YAML, on new lines indented N spaces
    {{- .Values.a | nindent N }}           a string as a block, each line indented N spaces
    {{- if .Values.x.enabled }} ... {{- end }}   a whole-file conditional (first and last line)

"{{-" trims the whitespace before the action, as in Go templates. Each rendered template is
stripped and printed, in alphabetical order of file name, after "---" and a
"# Source: <chart>/templates/<file>" line, as `helm template` prints them.

Usage: python3 deploy/helm/render.py [--release NAME] > deploy/helm/rendered.yaml   (needs PyYAML)
"""

import json
import os
import re
import sys

import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shadowroute")
ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+-][A-Za-z0-9_ ./:@%+=-]*$")


def lookup(ctx, path):
    value = ctx
    for part in path.lstrip(".").split("."):
        value = value[part]
    return value


def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def needs_quotes(text):
    if text == "" or not PLAIN.match(text) or text != text.strip():
        return True
    # A string that YAML would read back as something else (number, bool, null, date...).
    return yaml.safe_load(text) != text


def to_yaml(value, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            key = scalar(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {leaf(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {leaf(item)}")
    else:
        lines.append(pad + leaf(value))
    return lines


def leaf(value):
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, str):
        return json.dumps(value) if needs_quotes(value) else value
    return scalar(value)


def nindent(text, n):
    pad = " " * n
    return "\n" + pad + text.replace("\n", "\n" + pad)


def evaluate(expr, ctx):
    m = re.fullmatch(r"toYaml (\.[\w.-]+) \| nindent (\d+)", expr)
    if m:
        return nindent("\n".join(to_yaml(lookup(ctx, m.group(1)))), int(m.group(2)))
    m = re.fullmatch(r"(\.[\w.-]+) \| nindent (\d+)", expr)
    if m:
        return nindent(lookup(ctx, m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(\.[\w.-]+) \| quote", expr)
    if m:
        return json.dumps(scalar(lookup(ctx, m.group(1))))
    m = re.fullmatch(r"(\.[\w.-]+)", expr)
    if m:
        return scalar(lookup(ctx, m.group(1)))
    raise SystemExit(f"unsupported template action: {{{{ {expr} }}}}")


def render(text, ctx):
    out = []
    pos = 0
    enabled = [True]
    trim_next = False
    for m in ACTION.finditer(text):
        literal = text[pos : m.start()]
        if trim_next:
            literal = literal.lstrip()
        if enabled[-1]:
            out.append(literal)
        if m.group(1) and enabled[-1]:
            out[-1] = out[-1].rstrip()
        expr = m.group(2)
        cond = re.fullmatch(r"if (\.[\w.-]+)", expr)
        if cond:
            enabled.append(enabled[-1] and bool(lookup(ctx, cond.group(1))))
        elif expr == "end":
            enabled.pop()
        elif enabled[-1]:
            out.append(evaluate(expr, ctx))
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = text[pos:]
    if trim_next:
        rest = rest.lstrip()
    if enabled[-1]:
        out.append(rest)
    return "".join(out)


def main():
    release = "shadowroute"
    if len(sys.argv) == 3 and sys.argv[1] == "--release":
        release = sys.argv[2]
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    ctx = {
        "Values": values,
        "Release": {"Name": release},
        "Chart": {"Name": chart["name"], "AppVersion": chart["appVersion"], "Version": chart["version"]},
    }
    templates = os.path.join(CHART, "templates")
    docs = []
    for name in sorted(os.listdir(templates)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(templates, name)) as f:
            body = render(f.read(), ctx).strip()
        if body:
            docs.append(f"---\n# Source: {chart['name']}/templates/{name}\n{body}\n")
    sys.stdout.write("".join(docs))


if __name__ == "__main__":
    main()
