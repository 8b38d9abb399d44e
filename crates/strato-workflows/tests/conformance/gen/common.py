WV = "https://docs.aws.amazon.com/step-functions/latest/dg/workflow-variables.html"
TD = "https://docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html"
SPEC = "https://states-language.net/spec.html"
CHOICE = "https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html"
CTX = "https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html"
MAPI = "https://docs.aws.amazon.com/step-functions/latest/dg/state-map-inline.html"
WAIT = "https://docs.aws.amazon.com/step-functions/latest/dg/state-wait.html"
FAIL = "https://docs.aws.amazon.com/step-functions/latest/dg/state-fail.html"
PASS = "https://docs.aws.amazon.com/step-functions/latest/dg/state-pass.html"
PAR = "https://docs.aws.amazon.com/step-functions/latest/dg/state-parallel.html"
SM = "https://docs.aws.amazon.com/step-functions/latest/dg/statemachine-structure.html"
INTR = "https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html"
ERR = "https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html"
JSONATA_AGG = "https://docs.jsonata.org/aggregation-functions"
JSONATA_STR = "https://docs.jsonata.org/string-functions"

def case(name, source, note, definition, inp, expected):
    assert note.startswith("[literal]") or note.startswith("[derived]"), name
    return {"name": name, "source": source, "note": note, "definition": definition,
            "input": inp, "expected": expected}

def out(v):
    return {"output": v}

def err(e, cause=None):
    d = {"error": e}
    if cause is not None:
        d["cause"] = cause
    return d

def branch(name):
    return {"Type": "Pass", "Result": {"branch": name}, "End": True}

QEE = "States.QueryEvaluationError"
