from common import *

C = []

# 1
C.append(case("vars-spec-make-model-year", SPEC + "#assigning-variables",
  "[literal] Spec 'Assigning State Machine Variables': FirstState assigns make, model and year; SecondState (JSONata) outputs \"{% $year & ' ' & $make & ' ' & $model %}\", which the spec says is \"2006 Infiniti G35\". SecondState ends the machine instead of going on to ThirdState.",
  {"StartAt": "FirstState", "States": {
    "FirstState": {"Type": "Pass", "Assign": {"make": "Infiniti", "model": "G35", "year": 2006}, "Next": "SecondState"},
    "SecondState": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $year & ' ' & $make & ' ' & $model %}", "End": True}}},
  {}, out("2006 Infiniti G35")))

# 2
C.append(case("vars-spec-assign-reads-entry-value", SPEC + "#assigning-variables",
  "[literal] Spec: with x = 5 on state entry, Assign {\"x\": 42, \"newOrOld\": \"{% $x %}\"} assigns 42 to x and 5 to newOrOld; the new x only takes effect in the next state. Init supplies x = 5; Report shows both values.",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"x": 5}, "Next": "Assigning"},
    "Assigning": {"Type": "Pass", "Assign": {"x": 42, "newOrOld": "{% $x %}"}, "Next": "Referencing"},
    "Referencing": {"Type": "Pass", "Output": {"x": "{% $x %}", "newOrOld": "{% $newOrOld %}"}, "End": True}}},
  {}, out({"x": 42, "newOrOld": 5})))

# 3
C.append(case("vars-guide-evaluation-order-swap", WV,
  "[literal] 'Evaluation order in an assign field': starting values $x=3, $a=6; Assign {\"x\": \"{% $a %}\", \"nextX\": \"{% $x %}\"}; ending values $x=6, $nextX=3 (all expressions are evaluated first, then assigned).",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"x": 3, "a": 6}, "Next": "Swap"},
    "Swap": {"Type": "Pass", "Assign": {"x": "{% $a %}", "nextX": "{% $x %}"}, "Next": "Report"},
    "Report": {"Type": "Pass", "Output": {"x": "{% $x %}", "nextX": "{% $nextX %}", "a": "{% $a %}"}, "End": True}}},
  {}, out({"x": 6, "nextX": 3, "a": 6})))

# 4
C.append(case("vars-guide-unassigned-reference-fails", WV,
  "[derived] Same Assign as the evaluation-order example, but $x has no value on entry: the guide says 'If $x had not been previously assigned, the example would fail because $x would be undefined'. transforming-data: an expression that fails to return a result throws States.QueryEvaluationError.",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"a": 6}, "Next": "Swap"},
    "Swap": {"Type": "Pass", "Assign": {"x": "{% $a %}", "nextX": "{% $x %}"}, "End": True}}},
  {}, err(QEE)))

# 5
C.append(case("vars-assign-not-visible-in-same-state-output", WV,
  "[derived] Assign and Output are processed in parallel ('assigning variable values will not affect state Output'); spec: a new value only takes effect in the next state. S assigns x = 42 while its Output reads the entry value 5; Report sees 42.",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"x": 5}, "Next": "S"},
    "S": {"Type": "Pass", "Assign": {"x": 42}, "Output": {"outputSaw": "{% $x %}"}, "Next": "Report"},
    "Report": {"Type": "Pass", "Output": {"previous": "{% $states.input.outputSaw %}", "now": "{% $x %}"}, "End": True}}},
  {}, out({"previous": 5, "now": 42})))

# 6
C.append(case("vars-assign-transform-not-in-output", TD,
  "[derived] transforming-data note: 'If you choose to transform data during variable assignment, that transformed data will not be available in the Output step.' S has no Output, so its output is its input (spec: a JSONata Pass without Output copies input to output); the transformed value is only in the variable. $uppercase per " + JSONATA_STR + ".",
  {"QueryLanguage": "JSONata", "StartAt": "S", "States": {
    "S": {"Type": "Pass", "Assign": {"upper": "{% $uppercase($states.input.name) %}"}, "Next": "Report"},
    "Report": {"Type": "Pass", "Output": {"in": "{% $states.input %}", "v": "{% $upper %}"}, "End": True}}},
  {"name": "ada"}, out({"in": {"name": "ada"}, "v": "ADA"})))

# 7
C.append(case("vars-guide-static-assign-read-by-jsonpath", WV,
  "[literal] Guide's first Assign example {\"productName\": \"product1\", \"count\": 42, \"available\": true}; a later JSONPath state references them as $productName, $count, $available in Parameters ('You can reference a variable in any field that accepts a JSONPath expression'). Read in JSONPath because in JSONata $count would name the built-in function.",
  {"StartAt": "Store", "States": {
    "Store": {"Type": "Pass", "Assign": {"productName": "product1", "count": 42, "available": True}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"productName.$": "$productName", "count.$": "$count", "available.$": "$available"}, "End": True}}},
  {}, out({"productName": "product1", "count": 42, "available": True})))

# 8
C.append(case("vars-guide-conversion-jsonpath-parameters", TD,
  "[literal] transforming-data conversion sample (JSONPath side), in a Pass instead of a Task: given input {\"title\": \"Doctor\"} and customerName assigned \"María\", Parameters produce {static, title, name, not-evaluated} with \"not-evaluated\" left as the literal \"$customerName\" (no .$ suffix).",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"customerName": "María"}, "Next": "Convert"},
    "Convert": {"Type": "Pass", "QueryLanguage": "JSONPath", "Parameters": {"static": "Hello", "title.$": "$.title", "name.$": "$customerName", "not-evaluated": "$customerName"}, "End": True}}},
  {"title": "Doctor"}, out({"static": "Hello", "title": "Doctor", "name": "María", "not-evaluated": "$customerName"})))

# 9
C.append(case("vars-jsonpath-pass-assign-sees-result-not-output", WV,
  "[derived] 'For Pass, $ refers to the result, whether generated by the Result field or the InputPath/Parameters fields' (also spec 'Using Assign' under JSONPath). Uses the state-pass page's Result/ResultPath example: Assign reads $['x-datum'] from the Result, not from the state output where the Result sits under coords.",
  {"StartAt": "No-op", "States": {
    "No-op": {"Type": "Pass", "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355}, "ResultPath": "$.coords", "Assign": {"x.$": "$['x-datum']"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"x.$": "$x", "georef.$": "$.georefOf", "coords.$": "$.coords"}, "End": True}}},
  {"georefOf": "Home"}, out({"x": 0.381018, "georef": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}})))

# 10
C.append(case("vars-jsonpath-pass-assign-sees-parameters", WV,
  "[derived] JSONPath Pass: $ in Assign is the result generated by Parameters, so $.b is the Parameters output's b (the raw input has no b).",
  {"StartAt": "P", "States": {
    "P": {"Type": "Pass", "Parameters": {"b.$": "$.a"}, "Assign": {"fromResult.$": "$.b"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"v.$": "$fromResult"}, "End": True}}},
  {"a": 1}, out({"v": 1})))

# 11
C.append(case("vars-jsonpath-choice-rule-assign-effective-input", WV,
  "[derived] 'In Choice and Wait state, $ refers to the effective input, which is the value after InputPath has been applied'. The matching rule's Assign reads $.value from the InputPath selection.",
  {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "InputPath": "$.data", "Choices": [
      {"Variable": "$.value", "NumericGreaterThan": 10, "Assign": {"picked.$": "$.value"}, "Next": "Big"}], "Default": "Small"},
    "Big": {"Type": "Pass", "Parameters": {"picked.$": "$picked"}, "End": True},
    "Small": branch("Small")}},
  {"data": {"value": 22}}, out({"picked": 22})))

# 12
C.append(case("vars-jsonpath-wait-assign-effective-input", WV,
  "[derived] Wait supports Assign; in JSONPath its $ is the effective input after InputPath.",
  {"StartAt": "W", "States": {
    "W": {"Type": "Wait", "Seconds": 0, "InputPath": "$.inner", "Assign": {"w.$": "$.v"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"w.$": "$w"}, "End": True}}},
  {"inner": {"v": "hi"}}, out({"w": "hi"})))

DISPATCH_JP = {"StartAt": "Init", "States": {
  "Init": {"Type": "Pass", "Assign": {"range": "unset"}, "Next": "DispatchEvent"},
  "DispatchEvent": {"Type": "Choice", "Choices": [
    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
    {"And": [{"Variable": "$.value", "IsPresent": True}, {"Variable": "$.value", "IsNumeric": True},
             {"Variable": "$.value", "NumericGreaterThanEquals": 20}, {"Variable": "$.value", "NumericLessThan": 30}],
     "Assign": {"range": "twenties"}, "Next": "ValueInTwenties"},
    {"Variable": "$.rating", "NumericGreaterThanPath": "$.auditThreshold", "Next": "StartAudit"}],
    "Default": "RecordEvent", "Assign": {"range": "default"}},
  "Public": {"Type": "Pass", "Parameters": {"branch": "Public", "range.$": "$range"}, "End": True},
  "ValueInTwenties": {"Type": "Pass", "Parameters": {"branch": "ValueInTwenties", "range.$": "$range"}, "End": True},
  "StartAudit": {"Type": "Pass", "Parameters": {"branch": "StartAudit", "range.$": "$range"}, "End": True},
  "RecordEvent": {"Type": "Pass", "Parameters": {"branch": "RecordEvent", "range.$": "$range"}, "End": True}}}

# 13-15
C.append(case("vars-spec-jsonpath-dispatch-twenties", SPEC + "#choice-state",
  "[literal] Spec JSONPath Choice 'DispatchEvent': with input {\"type\": \"Private\", \"value\": 22} the interpreter assigns \"twenties\" to range before transitioning to ValueInTwenties. Init (range = \"unset\") and the Pass states that report range are added.",
  DISPATCH_JP, {"type": "Private", "value": 22}, out({"branch": "ValueInTwenties", "range": "twenties"})))
C.append(case("vars-spec-jsonpath-dispatch-default-assign", SPEC + "#choice-state",
  "[derived] Spec: 'If no Choice Rules match, the interpreter evaluates the states's top-level Assign field'; DispatchEvent's top-level Assign sets range to \"default\" and Default goes to RecordEvent.",
  DISPATCH_JP, {"type": "Private", "value": 5, "rating": 1, "auditThreshold": 10}, out({"branch": "RecordEvent", "range": "default"})))
C.append(case("vars-spec-jsonpath-dispatch-rule-skips-top-assign", SPEC + "#choice-state",
  "[derived] Spec: 'If a Choice Rule is chosen, the interpreter evaluates the Choice Rule's Assign field, if any, and does not evaluate the state's top-level Assign field.' The first rule (no Assign) matches, so range keeps Init's \"unset\".",
  DISPATCH_JP, {"type": "Public"}, out({"branch": "Public", "range": "unset"})))

# 16
C.append(case("vars-jsonpath-choice-variable-field-of-variable", WV,
  "[derived] 'To reference a variable, you also use the $ symbol before a variable name, for example, $x or $order.numItems'; Choice Variable accepts a JSONPath, so $order.numItems selects a field of the variable.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"order": {"numItems": 3}}, "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Variable": "$order.numItems", "NumericEquals": 3, "Next": "Three"}], "Default": "Other"},
    "Three": branch("Three"), "Other": branch("Other")}},
  {}, out({"branch": "Three"})))

# 17
C.append(case("vars-jsonpath-choice-path-comparator-variable", WV,
  "[derived] A variable can be referenced in any field that accepts a JSONPath, so a *Path comparator can compare against a variable ($limit = 10, value 11 > 10).",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"limit": 10}, "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.value", "NumericGreaterThanPath": "$limit", "Next": "Over"}], "Default": "Under"},
    "Over": branch("Over"), "Under": branch("Under")}},
  {"value": 11}, out({"branch": "Over"})))

# 18
C.append(case("vars-guide-intrinsic-variable-argument", WV,
  "[derived] Guide: 'In JSONPath fields that accept intrinsic functions, variables can be used in the arguments, for example States.Format('The order number is {}', $order.number)'. The page shows no output; the string fills the template.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"order": {"number": 42}}, "Next": "F"},
    "F": {"Type": "Pass", "Parameters": {"message.$": "States.Format('The order number is {}', $order.number)"}, "End": True}}},
  {}, out({"message": "The order number is 42"})))

# 19
C.append(case("vars-guide-jsonpath-assign-example", WV,
  "[derived] Guide's JSONPath Assign example (details with nested lineItems.$, resultCode.$, message.$ with States.Format('Hello {}', $customer.name), startTime.$ from $$.Execution.StartTime) in a Pass whose Result stands in for the task result. startTime is checked against $$.Execution.StartTime with a Choice rather than a fixed value.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"customer": {"name": "María"}}, "Next": "Collect"},
    "Collect": {"Type": "Pass", "Result": {"order": {"items": [1, 2]}, "result": {"code": 200}},
      "Assign": {"details": {"status": "SUCCESS", "lineItems.$": "$.order.items"}, "resultCode.$": "$.result.code",
                 "message.$": "States.Format('Hello {}', $customer.name)", "startTime.$": "$$.Execution.StartTime"},
      "Next": "Check"},
    "Check": {"Type": "Choice", "Choices": [{"Variable": "$startTime", "StringEqualsPath": "$$.Execution.StartTime", "Next": "Report"}], "Default": "Mismatch"},
    "Report": {"Type": "Pass", "Parameters": {"details.$": "$details", "resultCode.$": "$resultCode", "message.$": "$message"}, "End": True},
    "Mismatch": branch("Mismatch")}},
  {}, out({"details": {"status": "SUCCESS", "lineItems": [1, 2]}, "resultCode": 200, "message": "Hello María"})))

# 20
C.append(case("vars-guide-jsonpath-deep-scan-assign", WV,
  "[derived] Guide's Assign {\"products.$\": \"$.order..product\", \"orderTotal.$\": \"$.order.total\"} in a Pass with no Result or Parameters, so $ is the state input (the Pass result is its input). A path yielding several values is gathered into an array (spec 'Input and Output Processing with JSONPath').",
  {"StartAt": "Store", "States": {
    "Store": {"Type": "Pass", "Assign": {"products.$": "$.order..product", "orderTotal.$": "$.order.total"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"products.$": "$products", "orderTotal.$": "$orderTotal"}, "End": True}}},
  {"order": {"items": [{"product": "A"}, {"product": "B"}], "total": 30}}, out({"products": ["A", "B"], "orderTotal": 30})))

# 21
C.append(case("vars-jsonpath-map-assign-raw-result", WV,
  "[derived] Map in JSONPath: $ in Assign is the result (spec), and the guide's diagram has Assign happen at the same time as ResultSelector, so the variable holds the whole iteration array while ResultSelector/ResultPath shape the output.",
  {"StartAt": "M", "States": {
    "M": {"Type": "Map", "ItemsPath": "$.items",
      "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}},
      "ResultSelector": {"first.$": "$[0]"}, "ResultPath": "$.selected", "Assign": {"all.$": "$"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"all.$": "$all", "selected.$": "$.selected"}, "End": True}}},
  {"items": [1, 2, 3]}, out({"all": [1, 2, 3], "selected": {"first": 1}})))

# 22
C.append(case("vars-jsonpath-parallel-assign-result-resultpath-null", WV,
  "[derived] Parallel in JSONPath: $ in Assign is the result (the branch-output array); ResultPath null discards the result from the output (spec), but the variable still receives it.",
  {"StartAt": "P", "States": {
    "P": {"Type": "Parallel", "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "A", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "B", "End": True}}}],
      "ResultPath": None, "Assign": {"both.$": "$"}, "Next": "Read"},
    "Read": {"Type": "Pass", "Parameters": {"both.$": "$both", "x.$": "$.x"}, "End": True}}},
  {"x": 1}, out({"both": ["A", "B"], "x": 1})))

# 23
C.append(case("vars-jsonpath-map-itemselector-reads-variable", WV,
  "[derived] A variable can be referenced in any JSONPath field; ItemSelector (with $$.Map.Item.Value, per input-output-itemselector) also reads the outer variable $tag.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"tag": "t1"}, "Next": "M"},
    "M": {"Type": "Map", "ItemsPath": "$.items", "ItemSelector": {"value.$": "$$.Map.Item.Value", "tag.$": "$tag"},
      "ItemProcessor": {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}, "End": True}}},
  {"items": [1, 2]}, out([{"value": 1, "tag": "t1"}, {"value": 2, "tag": "t1"}])))

# 24
C.append(case("vars-jsonpath-map-inner-reads-outer", WV,
  "[derived] 'Parallel branches and Map iterations can access variable values from outer scopes': a state inside the Map reads $greeting assigned before the Map.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"greeting": "hi"}, "Next": "M"},
    "M": {"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
        "Inner": {"Type": "Pass", "Parameters": {"item.$": "$", "outer.$": "$greeting"}, "End": True}}}, "End": True}}},
  [1, 2], out([{"item": 1, "outer": "hi"}, {"item": 2, "outer": "hi"}])))

SCOPE = {"QueryLanguage": "JSONata", "StartAt": "Get Greeting", "States": {
  "Get Greeting": {"Type": "Pass", "Assign": {"outer": "hello"}, "Next": "Greet Everyone"},
  "Greet Everyone": {"Type": "Map", "ItemProcessor": {"StartAt": "Begin", "States": {
      "Begin": {"Type": "Pass", "Assign": {"inner": "world", "hi": "{% $outer %}"}, "Next": "End"},
      "End": {"Type": "Succeed", "Output": "{% $hi %}"}}},
    "Assign": {"outer": 2}, "Next": "Goodbye"},
  "Goodbye": {"Type": "Succeed", "Output": "{% $outer %}"}}}

# 25
C.append(case("vars-spec-scope-map-outer-inner", SPEC + "#variable-scope",
  "[literal] Spec 'Variable Scope' example: Begin (inner scope) reads outer but assigns only inner and hi; the Map itself reassigns outer = 2 in the outer scope; 'state \"Goodbye\" will output the number 2'. The spec gives no input; the Map has no Items, so its input must be an array.",
  SCOPE, ["first", "second"], out(2)))

import copy
SCOPE2 = copy.deepcopy(SCOPE)
SCOPE2["States"]["Goodbye"]["Output"] = {"outer": "{% $outer %}", "mapped": "{% $states.input %}"}
# 26
C.append(case("vars-spec-scope-map-iteration-output", SPEC + "#variable-scope",
  "[literal] Same spec example: 'State \"End\" will output the string hello' in each iteration, the Map result is the array of iteration outputs (no Output field: the state output is the result), and outer is 2 after the Map.",
  SCOPE2, ["first", "second"], out({"outer": 2, "mapped": ["hello", "hello"]})))

# 27
C.append(case("vars-map-iterations-keep-separate-values", SPEC + "#variable-scope",
  "[derived] Spec: 'The interpreter maintains separate variable values for each scope, including for each Parallel branch and Map iteration.' Each iteration assigns mine from its own item and outputs it.",
  {"QueryLanguage": "JSONata", "StartAt": "M", "States": {
    "M": {"Type": "Map", "MaxConcurrency": 0, "ItemProcessor": {"StartAt": "Keep", "States": {
        "Keep": {"Type": "Pass", "Assign": {"mine": "{% $states.input %}"}, "Next": "Emit"},
        "Emit": {"Type": "Succeed", "Output": "{% $mine %}"}}}, "End": True}}},
  ["x", "y", "z"], out(["x", "y", "z"])))

# 28
C.append(case("vars-parallel-branches-read-outer-assign-own", WV,
  "[derived] Branches read the outer variable base and each keeps its own workflow-local variable (a / b); the Parallel result is the branch outputs in branch order (spec Parallel State).",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"base": "x"}, "Next": "P"},
    "P": {"Type": "Parallel", "Branches": [
        {"StartAt": "A1", "States": {"A1": {"Type": "Pass", "Assign": {"a": "{% $base & '-a' %}"}, "Next": "A2"},
                                      "A2": {"Type": "Succeed", "Output": "{% $a %}"}}},
        {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Assign": {"b": "{% $base & '-b' %}"}, "Next": "B2"},
                                      "B2": {"Type": "Succeed", "Output": "{% $b %}"}}}], "End": True}}},
  {}, out(["x-a", "x-b"])))

# 29
C.append(case("vars-catch-assign-writes-outer-scope", WV,
  "[derived] 'When handling errors, the Assign field in a Catch can assign values to variables in the outer scope, that is, the scope in which the Parallel/Map state exists.' The branch's Fail is caught with States.ALL.",
  {"QueryLanguage": "JSONata", "StartAt": "P", "States": {
    "P": {"Type": "Parallel", "Branches": [{"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "BranchBoom", "Cause": "test"}}}],
      "Catch": [{"ErrorEquals": ["States.ALL"], "Assign": {"recovered": True}, "Next": "Report"}], "End": True},
    "Report": {"Type": "Pass", "Output": {"recovered": "{% $recovered %}"}, "End": True}}},
  {}, out({"recovered": True})))

CATCHVS = {"QueryLanguage": "JSONata", "StartAt": "P", "States": {
  "P": {"Type": "Parallel", "Branches": [{"StartAt": "Decide", "States": {
      "Decide": {"Type": "Choice", "Choices": [{"Condition": "{% $states.input.fail %}", "Next": "Boom"}], "Default": "Fine"},
      "Boom": {"Type": "Fail", "Error": "BranchBoom", "Cause": "test"},
      "Fine": {"Type": "Succeed"}}}],
    "Assign": {"status": "ok"},
    "Catch": [{"ErrorEquals": ["States.ALL"], "Assign": {"status": "failed"}, "Next": "Report"}], "Next": "Report"},
  "Report": {"Type": "Pass", "Output": "{% $status %}", "End": True}}}
# 30-31
C.append(case("vars-catch-assign-replaces-top-level-assign", SPEC + "#error-output",
  "[derived] Spec: 'If a state reports an error, the interpreter evaluates the matching Catcher's \"Assign\" field, if any, and does not evaluate the state's top-level \"Assign\" field.'",
  CATCHVS, {"fail": True}, out("failed")))
C.append(case("vars-top-level-assign-on-success", SPEC + "#error-output",
  "[derived] Same machine; the branch succeeds, so the Parallel's top-level Assign runs and the Catcher's does not.",
  CATCHVS, {"fail": False}, out("ok")))

# 32
C.append(case("vars-jsonpath-catch-assign-error-output", SPEC + "#filters",
  "[derived] Spec 'Using Assign' (JSONPath): '$' refers ... 'to the Error Output in a Catcher's \"Assign\"'. The Error Output MUST have a string field Error, so $err is a string. A Choice on the variable checks it without depending on the propagated error name.",
  {"StartAt": "P", "States": {
    "P": {"Type": "Parallel", "Branches": [{"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}}}],
      "Catch": [{"ErrorEquals": ["States.ALL"], "Assign": {"err.$": "$.Error"}, "Next": "Check"}], "End": True},
    "Check": {"Type": "Choice", "Choices": [{"Variable": "$err", "IsString": True, "Next": "Caught"}], "Default": "NotCaught"},
    "Caught": branch("Caught"), "NotCaught": branch("NotCaught")}},
  {}, out({"branch": "Caught"})))

# 33
C.append(case("vars-jsonpath-evaluation-order-swap", WV,
  "[derived] 'All variable references in Step Functions states use the values as they were on state entry' applies to JSONPath Assign too: {\"x.$\": \"$a\", \"nextX.$\": \"$x\"} with x=3, a=6 gives x=6, nextX=3.",
  {"StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"x": 3, "a": 6}, "Next": "Swap"},
    "Swap": {"Type": "Pass", "Assign": {"x.$": "$a", "nextX.$": "$x"}, "Next": "Report"},
    "Report": {"Type": "Pass", "Parameters": {"x.$": "$x", "nextX.$": "$nextX"}, "End": True}}},
  {}, out({"x": 6, "nextX": 3})))

PTD = {"QueryLanguage": "JSONata", "StartAt": "ProvideTestData", "States": {
  "ProvideTestData": {"Type": "Pass", "Assign": {"coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355,
      "additional": "{% $exists($states.input.moreData) ? $states.input.moreData : {} %}"}}, "Next": "Report"},
  "Report": {"Type": "Pass", "Output": "{% $coords %}", "End": True}}}
# 34-35
C.append(case("vars-spec-pass-assign-nested-expression-present", SPEC + "#pass-state",
  "[derived] Spec JSONata Pass 'ProvideTestData': a JSONata string nested inside the assigned object is evaluated; with moreData present, additional is moreData.",
  PTD, {"moreData": {"k": 1}}, out({"x-datum": 0.381018, "y-datum": 622.2269926397355, "additional": {"k": 1}})))
C.append(case("vars-spec-pass-assign-nested-expression-absent", SPEC + "#pass-state",
  "[derived] Same example without moreData: the conditional yields {}.",
  PTD, {}, out({"x-datum": 0.381018, "y-datum": 622.2269926397355, "additional": {}})))

# 36
C.append(case("vars-expression-binding-is-not-a-state-variable", SPEC + "#expressions",
  "[derived] Spec: 'A variable assigned inside a JSONata expression does not affect the value of any state machine variable.' Bind's expression binds $x := 5 locally; the state machine variable x stays 1.",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "Bind"},
    "Bind": {"Type": "Pass", "Output": "{% ($x := 5; $x) %}", "Next": "Report"},
    "Report": {"Type": "Pass", "Output": {"inExpr": "{% $states.input %}", "x": "{% $x %}"}, "End": True}}},
  {}, out({"inExpr": 5, "x": 1})))

# 37
C.append(case("vars-wait-assign-jsonata", WAIT,
  "[derived] Wait is one of the states that support Assign (workflow-variables); in JSONata its Assign may reference $states.input (spec 'Using Assign').",
  {"QueryLanguage": "JSONata", "StartAt": "W", "States": {
    "W": {"Type": "Wait", "Seconds": 0, "Assign": {"waitedOn": "{% $states.input.id %}"}, "Next": "Report"},
    "Report": {"Type": "Pass", "Output": "{% $waitedOn %}", "End": True}}},
  {"id": "w1"}, out("w1")))

# 38
C.append(case("vars-choice-rule-assign-jsonata-condition-on-variable", SPEC + "#choice-state",
  "[derived] JSONata Choice Rule with Assign: the chosen rule's Assign runs; the Condition reads a variable assigned earlier (state-choice: \"{% $foo = 1 %}\").",
  {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
    "Init": {"Type": "Pass", "Assign": {"foo": 1, "label": "none"}, "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Condition": "{% $foo = 1 %}", "Assign": {"label": "one"}, "Next": "Report"}], "Default": "Report"},
    "Report": {"Type": "Pass", "Output": "{% $label %}", "End": True}}},
  {}, out("one")))

import json, sys
json.dump(C, open(sys.argv[1], "w"), indent=2, ensure_ascii=False)
print(len(C))
