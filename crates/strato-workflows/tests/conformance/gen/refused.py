from common import *
C = []
J = "JSONata"
R = {"refused": True}
def jm(states, start="P", **kw):
    d = {"QueryLanguage": J, "StartAt": start, "States": states}; d.update(kw); return d
def jp(states, start="P"):
    return {"StartAt": start, "States": states}

C.append(case("refuse-assign-reserved-states-jsonata", SPEC + "#state-machine-variables",
  "[derived] Spec: 'This specification defines one reserved variable called \"states\" ... A state MUST NOT assign a value to \"states\".'",
  jm({"P": {"Type": "Pass", "Assign": {"states": 1}, "End": True}}), {}, R))
C.append(case("refuse-assign-reserved-states-jsonpath", SPEC + "#reserved-states-variable-with-jsonpath",
  "[derived] Spec 'Reserved \"states\" Variable with JSONPath': 'A state MUST NOT assign a value to \"states\".'",
  jp({"P": {"Type": "Pass", "Assign": {"states": {"input": 1}}, "End": True}}), {}, R))
C.append(case("refuse-inner-scope-assigns-outer-name-map", SPEC + "#variable-scope",
  "[derived] Spec: 'states in inner scopes MUST NOT assign to a variable with the same name as a variable in an outer scope'; the guide: 'if the top-level scope assigns a value to a variable called myVariable, then no other scope (inside a Map, Parallel) can assign to myVariable as well.' The spec's Begin state here also assigns outer.",
  jm({"Get Greeting": {"Type": "Pass", "Assign": {"outer": "hello"}, "Next": "Greet Everyone"},
      "Greet Everyone": {"Type": "Map", "ItemProcessor": {"StartAt": "Begin", "States": {
          "Begin": {"Type": "Pass", "Assign": {"outer": "world"}, "End": True}}}, "End": True}}, "Get Greeting"), [1], R))
C.append(case("refuse-inner-scope-assigns-outer-name-parallel", WV,
  "[derived] Same rule for a Parallel branch: the branch may read myVariable but not assign it.",
  jp({"P": {"Type": "Pass", "Assign": {"myVariable": 1}, "Next": "Par"},
      "Par": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Assign": {"myVariable": 2}, "End": True}}}], "End": True}}), {}, R))
C.append(case("refuse-assign-part-of-variable-dot", WV,
  "[derived] Guide: 'You cannot assign a value to a part of a variable. For example, you can \"Assign\":{\"x\":42}, but you cannot \"Assign\":{\"x.y\":42}'.",
  jm({"P": {"Type": "Pass", "Assign": {"x.y": 42}, "End": True}}), {}, R))
C.append(case("refuse-assign-part-of-variable-index", WV,
  "[derived] Guide: ... 'or \"Assign\":{\"x[2]\":42}'.",
  jm({"P": {"Type": "Pass", "Assign": {"x[2]": 42}, "End": True}}), {}, R))
C.append(case("refuse-variable-name-starts-with-digit", WV,
  "[derived] 'The first character of a variable name must be a Unicode ID_Start character'; a digit is not.",
  jm({"P": {"Type": "Pass", "Assign": {"1st": 1}, "End": True}}), {}, R))
C.append(case("refuse-variable-name-over-80", WV,
  "[derived] 'The maximum length of a variable name is 80'; this name has 81 characters.",
  jm({"P": {"Type": "Pass", "Assign": {"v" * 81: 1}, "End": True}}), {}, R))
C.append(case("refuse-variable-in-resultpath", WV,
  "[derived] 'Variables cannot be used in ResultPath' (spec: 'the \"ResultPath\" field MUST NOT reference a variable').",
  jp({"Init": {"Type": "Pass", "Assign": {"x": {}}, "Next": "P"}, "P": {"Type": "Pass", "Result": 1, "ResultPath": "$x", "End": True}}, "Init"), {}, R))
C.append(case("refuse-jsonata-state-with-parameters", TD,
  "[derived] 'InputPath, Parameters, ResultSelector, ResultPath, OutputPath, and other JSONPath fields are only supported in JSONPath, so it is invalid to use path-based fields when using JSONata'.",
  jm({"P": {"Type": "Pass", "Parameters": {"a": 1}, "End": True}}), {}, R))
C.append(case("refuse-jsonata-state-with-inputpath", TD,
  "[derived] InputPath is a JSONPath-only field (same rule).",
  jm({"P": {"Type": "Pass", "InputPath": "$.a", "End": True}}), {"a": 1}, R))
C.append(case("refuse-jsonata-state-with-outputpath", TD,
  "[derived] OutputPath is a JSONPath-only field (same rule).",
  jm({"P": {"Type": "Pass", "OutputPath": "$.a", "End": True}}), {"a": 1}, R))
C.append(case("refuse-jsonata-state-with-resultpath", TD,
  "[derived] ResultPath is a JSONPath-only field (same rule).",
  jm({"P": {"Type": "Pass", "ResultPath": "$.a", "End": True}}), {}, R))
C.append(case("refuse-jsonata-pass-with-result", PASS,
  "[derived] state-pass: 'Result (Optional, JSONPath only)'; a JSONata Pass uses Output instead.",
  jm({"P": {"Type": "Pass", "Result": {"a": 1}, "End": True}}), {}, R))
C.append(case("refuse-jsonpath-state-with-output", TD,
  "[derived] 'The Arguments and Output fields only support JSONata, so it is invalid to use them with workflows that use JSONPath.'",
  jp({"P": {"Type": "Pass", "Output": {"a": 1}, "End": True}}), {}, R))
C.append(case("refuse-jsonpath-parallel-with-arguments", TD,
  "[derived] Arguments only supports JSONata (same rule).",
  jp({"P": {"Type": "Parallel", "Arguments": {"a": 1}, "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}], "End": True}}), {}, R))
C.append(case("refuse-jsonata-choice-with-variable", TD,
  "[derived] 'Variables and comparison fields are only available for JSONPath. Condition is only available for JSONata.'",
  jm({"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "A"}], "Default": "A"}, "A": {"Type": "Pass", "End": True}}, "C"), {"a": 1}, R))
C.append(case("refuse-jsonpath-choice-with-condition", TD,
  "[derived] 'Condition is only available for JSONata.'",
  jp({"C": {"Type": "Choice", "Choices": [{"Condition": True, "Next": "A"}], "Default": "A"}, "A": {"Type": "Pass", "End": True}}, "C"), {}, R))
C.append(case("refuse-jsonata-machine-with-jsonpath-state", SM,
  "[derived] statemachine-structure: 'You cannot revert a top-level JSONata-based state machine to a mix of JSONata and JSONPath states.'",
  jm({"P": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": True}}), {}, R))
C.append(case("refuse-query-language-unknown", SM,
  "[derived] QueryLanguage: 'Allowed values are JSONPath and JSONata.'",
  {"QueryLanguage": "XPath", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, {}, R))
C.append(case("refuse-unclosed-jsonata-expression", TD,
  "[derived] 'the string must start with {% with no leading spaces, and must end with %} with no trailing spaces. Improperly opening or closing the expression will result in a validation error.'",
  jm({"P": {"Type": "Pass", "Output": "{% $states.input", "End": True}}), {}, R))
C.append(case("refuse-jsonata-trailing-space-after-close", TD,
  "[derived] Same rule: the string must end with %} with no trailing spaces.",
  jm({"P": {"Type": "Pass", "Output": "{% $states.input %} ", "End": True}}), {}, R))
C.append(case("refuse-states-result-in-pass", TD,
  "[derived] '$states.result' exists for Task, Parallel and Map; 'Attempting to access $states.result or $states.errorOutput in fields and states where they are not accessible will be caught at creation, update, or validation of the state machine.'",
  jm({"P": {"Type": "Pass", "Output": "{% $states.result %}", "End": True}}), {}, R))
C.append(case("refuse-states-result-in-arguments", SPEC + "#arguments-and-output",
  "[derived] Spec: '\"Arguments\" MAY reference $states.input and $states.context, but MUST NOT reference $states.result or $states.errorOutput'; the guide says such access is caught at validation.",
  jm({"P": {"Type": "Parallel", "Arguments": {"r": "{% $states.result %}"}, "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}], "End": True}}), {}, R))
C.append(case("refuse-states-erroroutput-in-top-level-output", TD,
  "[derived] '$states.errorOutput can be used in the Catch field's Assign or Output'; in the state's own Output it is not accessible, which is caught at validation.",
  jm({"P": {"Type": "Parallel", "Output": "{% $states.errorOutput %}", "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}], "End": True}}), {}, R))
C.append(case("refuse-jsonata-top-level-dollar", SPEC + "#jsonata-restrictions",
  "[derived] Spec 'JSONata Restrictions': 'a JSONata expression MUST NOT reference \"$\" or unqualified field names at the top level'.",
  jm({"P": {"Type": "Pass", "Output": "{% $.total %}", "End": True}}), {"total": 1}, R))
C.append(case("refuse-jsonata-double-dollar", SPEC + "#jsonata-restrictions",
  "[derived] Spec: 'Since the variable \"$$\" always refers to the entire input document, a JSONata expression MUST NOT reference \"$$\".'",
  jm({"P": {"Type": "Pass", "Output": "{% $$.total %}", "End": True}}), {"total": 1}, R))
C.append(case("refuse-assign-in-succeed", SPEC + "#state-machine-variables",
  "[derived] Spec: 'Any state except Succeed and Fail MAY have an \"Assign\" field'; the guide: Assign is available 'at the top level of each state (except Succeed and Fail)'.",
  jm({"S": {"Type": "Succeed", "Assign": {"x": 1}}}, "S"), {}, R))
C.append(case("refuse-assign-in-fail", SPEC + "#state-machine-variables",
  "[derived] Same rule for Fail.",
  jp({"F": {"Type": "Fail", "Error": "E", "Assign": {"x": 1}}}, "F"), {}, R))
C.append(case("refuse-arguments-in-pass", SPEC + "#state-type-table-jsonata",
  "[derived] Spec: 'Task and Parallel States MAY have \"Arguments\"' (JSONata field table: Arguments only for Task and Parallel).",
  jm({"P": {"Type": "Pass", "Arguments": {"a": 1}, "End": True}}), {}, R))
C.append(case("refuse-output-in-fail", SPEC + "#input-and-output-processing-with-jsonata",
  "[derived] Spec: 'Any state except Fail MAY have \"Output\"'.",
  jm({"F": {"Type": "Fail", "Error": "E", "Output": {"a": 1}}}, "F"), {}, R))
C.append(case("refuse-jsonata-wait-seconds-and-timestamp", SPEC + "#wait-state",
  "[derived] Spec: 'A JSONata Wait State MUST contain exactly one of \"Seconds\" or \"Timestamp\".'",
  jm({"W": {"Type": "Wait", "Seconds": 0, "Timestamp": "2016-03-14T01:59:00Z", "End": True}}, "W"), {}, R))
C.append(case("refuse-jsonata-wait-secondspath", WAIT,
  "[derived] state-wait: 'SecondsPath (Optional, JSONPath only)'.",
  jm({"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}, "W"), {"s": 0}, R))
C.append(case("refuse-jsonata-fail-errorpath", FAIL,
  "[derived] state-fail: 'ErrorPath (Optional, JSONPath only)'.",
  jm({"F": {"Type": "Fail", "ErrorPath": "$.e"}}, "F"), {"e": "E"}, R))
C.append(case("refuse-jsonata-map-itemspath", MAPI,
  "[derived] Inline Map: 'ItemsPath (Optional, JSONPath only)'.",
  jm({"M": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}, "End": True}}, "M"), {"items": [1]}, R))

import json, sys
json.dump(C, open(sys.argv[1], "w"), indent=2, ensure_ascii=False)
print(len(C))
