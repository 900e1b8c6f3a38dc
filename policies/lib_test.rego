package swiftdeploy.lib_test

import data.swiftdeploy.lib

test_fixed_rounds_to_the_given_decimals if {
	lib.fixed(5.14, 1) == "5.1"
	lib.fixed(5.15, 1) == "5.2"
	lib.fixed(0, 2) == "0.00"
	lib.fixed(1.05, 2) == "1.05"
	lib.fixed(0.999, 2) == "1.00"
	lib.fixed(1234.5678, 4) == "1234.5678"
	lib.fixed(411.6, 0) == "412"
	lib.fixed(0.0001, 4) == "0.0001"
}

test_fixed_keeps_ties_consistent if {
	# 0.0145 * 1000 is 14.499999999999998 in binary floating point
	lib.fixed(0.0145 * 100, 1) == "1.5"
	lib.fixed(2.675, 2) == "2.68"
}

test_fixed_handles_negative_numbers if {
	lib.fixed(-1.25, 1) == "-1.3"
	lib.fixed(-0.01, 1) == "0.0"
}

test_fixed_is_total if {
	lib.fixed("x", 1) == "n/a"
	lib.fixed(null, 1) == "n/a"
	lib.fixed(1e13, 1) == "n/a"
	lib.int(null) == "n/a"
}

test_pair_adds_decimals_until_values_differ if {
	lib.pair(4.96, 5, 1) == ["4.96", "5.00"]
	lib.pair(80.1, 1, 1) == ["80.1", "1.0"]
	lib.pair(5, 5, 1) == ["5.0", "5.0"]
	lib.pair(1.00001, 1, 1) == ["1.0000", "1.0000"]
	lib.pair("x", 1, 1) == ["n/a", "1.0"]
}

test_pct_pair if {
	lib.pct_pair(0.051, 0.01) == ["5.1%", "1.0%"]
	lib.pct_pair(0.0101, 0.01) == ["1.01%", "1.00%"]
	lib.pct_pair(null, 0.01) == ["n/a", "1.0%"]
}

test_ms_pair if {
	lib.ms_pair(812.4, 500) == ["812 ms", "500 ms"]
	lib.ms_pair(500.2, 500) == ["500.2 ms", "500.0 ms"]
	lib.ms_pair(9.5, 8) == ["9.5 ms", "8.0 ms"]
}

test_human_numbers if {
	lib.pct(0.051) == "5.1%"
	lib.pct("x") == "n/a"
	lib.percent(93.2) == "93.2%"
	lib.ms(120) == "120 ms"
	lib.ms(9.94) == "9.9 ms"
	lib.num(10) == "10"
	lib.num(12.345) == "12.35"
	lib.num(12.3) == "12.3"
	lib.small(0.01) == "0.01"
	lib.small(0.0001) == "0.0001"
	lib.seconds(12.34) == "12.34s"
	lib.seconds(null) == "n/a"
}

test_evalue if {
	lib.evalue(2000000) == "> 1000000"
	lib.evalue(812.4) == "812"
	lib.evalue(3.14159) == "3.14"
	lib.evalue(null) == "n/a"
}

test_inverse if {
	lib.inverse(0.01) == 100
	lib.inverse(0) == null
	lib.inverse("x") == null
}

test_number_is_undefined_for_non_numbers if {
	lib.number(3) == 3
	not lib.number("3")
	not lib.number(null)
}

test_typed_reasons_accept_valid_documents if {
	doc := {"a": {"n": 0, "s": "", "b": false}, "mode": "y"}
	count(lib.typed_reasons(doc, [["a", "n"]], "number")) == 0
	count(lib.typed_reasons(doc, [["a", "s"]], "string")) == 0
	count(lib.typed_reasons(doc, [["a", "b"]], "boolean")) == 0
	count(lib.choice_reasons(doc, ["mode"], ["x", "y"])) == 0
}

test_typed_reasons_report_each_problem if {
	doc := {"a": {"n": "1", "m": null, "b": 1}}
	lib.typed_reasons(doc, [["a", "n"], ["a", "m"], ["a", "k"]], "number") == {
		{
			"rule": "invalid_field", "message": "input field a.n is \"1\", expected a number",
			"observed": "1", "threshold": "number",
		},
		{
			"rule": "missing_field", "message": "input field a.m is missing",
			"observed": null, "threshold": "number",
		},
		{
			"rule": "missing_field", "message": "input field a.k is missing",
			"observed": null, "threshold": "number",
		},
	}
	lib.typed_reasons(doc, [["a", "b"]], "boolean") == {{
		"rule": "invalid_field", "message": "input field a.b is a number, expected a boolean",
		"observed": 1, "threshold": "boolean",
	}}
}

test_choice_reasons if {
	lib.choice_reasons({}, ["mode"], ["x", "y"]) == {{
		"rule": "missing_field", "message": "input field mode is missing",
		"observed": null, "threshold": ["x", "y"],
	}}
	lib.choice_reasons({"mode": "z"}, ["mode"], ["x", "y"]) == {{
		"rule": "invalid_field", "message": "input field mode is \"z\", expected one of x, y",
		"observed": "z", "threshold": ["x", "y"],
	}}
}

test_text if {
	lib.text("a", "b") == "a"
	lib.text(null, "b") == "b"
	lib.text(1, "b") == "b"
}
