# Helpers shared by the shipped policies: human-readable numbers and the
# input-contract check. Everything here is total (it never turns undefined on
# odd input), so a formatting problem can never make a deny or hold reason
# disappear.
#
# Both engines must produce the same message, byte for byte:
#   * numbers are formatted with integer arithmetic (round, floor, format_int),
#     not sprintf("%.1f"): OPA and rego-cpp print floats differently, and OPA
#     refuses %f for a whole number;
#   * messages are built with concat, not sprintf("%s"): rego-cpp 1.5.2 wraps a
#     string made by another builtin in quotes when sprintf formats it;
#   * no abs, min, max or sort on numbers (see magnitude and smaller below).
package swiftdeploy.lib

# fixed renders x with exactly d decimals (d = 0..4): fixed(5.14, 1) = "5.1".
# It is written flat because every function call costs rego-cpp tens of
# microseconds. The tiny offset before rounding keeps ties (0.0145 * 1000 =
# 14.4999...) on the same side in both engines, whose float arithmetic differs in
# the last bit.
fixed(x, d) := int(x) if {
	d == 0
} else := s if {
	m := magnitude(x)
	m < 1000000000000
	scale := [1, 10, 100, 1000, 10000][d]
	n := round((m * scale) + 0.000000001)
	whole := floor(n / scale)
	digits := format_int(n - (whole * scale), 10)
	s := concat("", [
		sign_prefix(x, n),
		format_int(whole, 10),
		".",
		substring("0000", 0, d - count(digits)),
		digits,
	])
} else := "n/a"

# int renders a whole number: int(412) = "412", int(411.6) = "412". No offset is
# needed here: a tie such as 812.5 is exact in binary, so both engines round it up.
int(x) := concat("", [sign_prefix(x, n), format_int(n, 10)]) if {
	m := magnitude(x)
	m < 1000000000000
	n := round(m)
} else := "n/a"

# magnitude is abs() for the engines' sake: rego-cpp 1.5.2's abs() keeps only 6
# significant digits of a float. Undefined for anything but a number.
magnitude(x) := x if {
	is_number(x)
	x >= 0
} else := 0 - x if {
	is_number(x)
}

sign_prefix(x, n) := "-" if {
	x < 0
	n > 0
} else := ""

# pair renders an observed value and its threshold with the same decimals: at least
# `least`, more (up to 4) when fewer could print two different numbers the same, so
# a message never reads "5.0% < 5.0%". Values 10^-d or more apart always differ
# at d decimals; the offset keeps both engines' float subtraction on the same side.
pair(x, t, least) := [fixed(x, d), fixed(t, d)] if {
	gap := magnitude(x - t)
	distinct := [d |
		some d in numbers.range(least, 4)
		(gap * [1, 10, 100, 1000, 10000][d]) + 0.000000001 >= 1
	]
	d := array.concat(distinct, [fallback_decimals(gap, least)])[0]
} else := [fixed(x, least), fixed(t, least)]

fallback_decimals(gap, least) := least if {
	gap == 0
} else := 4

# pct_pair renders two fractions as percentages: pct_pair(0.051, 0.01) = ["5.1%", "1.0%"].
pct_pair(x, t) := [concat("", [p[0], "%"]), concat("", [p[1], "%"])] if {
	is_number(x)
	is_number(t)
	p := pair(x * 100, t * 100, 1)
} else := [pct(x), pct(t)]

# percent_pair renders two values that already are percentages.
percent_pair(x, t) := [concat("", [p[0], "%"]), concat("", [p[1], "%"])] if {
	p := pair(x, t, 1)
}

# ms_pair renders two latencies: whole milliseconds from 10 ms up.
ms_pair(x, t) := [concat("", [p[0], " ms"]), concat("", [p[1], " ms"])] if {
	is_number(x)
	is_number(t)
	p := pair(x, t, ms_decimals(smaller(x, t)))
} else := [ms(x), ms(t)]

# smaller is min([x, t]) for the engines' sake: rego-cpp 1.5.2's min, max and sort
# order numbers as strings (min([2, 10]) is 10 there).
smaller(x, t) := x if {
	x <= t
} else := t

ms_decimals(x) := 0 if {
	x >= 10
} else := 1

# num renders up to two decimals without trailing zeros: 10 -> "10", 12.34 -> "12.34".
num(x) := trimmed(fixed(x, 2))

# small renders up to four decimals without trailing zeros: 0.01 -> "0.01".
small(x) := trimmed(fixed(x, 4))

trimmed(s) := trim_suffix(trim_right(s, "0"), ".") if {
	contains(s, ".")
} else := s

# pct renders a fraction as a percentage: pct(0.051) = "5.1%".
pct(fraction) := concat("", [fixed(fraction * 100, 1), "%"]) if {
	is_number(fraction)
} else := "n/a"

# percent renders a value that already is a percentage: percent(93.2) = "93.2%".
percent(x) := concat("", [fixed(x, 1), "%"]) if {
	is_number(x)
} else := "n/a"

# ms renders a latency: whole milliseconds from 10 ms up, one decimal below.
ms(x) := concat("", [fixed(x, ms_decimals(x)), " ms"]) if {
	is_number(x)
} else := "n/a"

seconds(x) := concat("", [num(x), "s"]) if {
	is_number(x)
} else := "n/a"

# duration renders seconds for a person: 42 -> "42s", 250 -> "4m 10s", 7300 -> "2h 1m".
duration(x) := concat("", [int(x), "s"]) if {
	is_number(x)
	x < 90
} else := concat("", [
	format_int(floor(x / 60), 10),
	"m ",
	format_int(floor(x - (floor(x / 60) * 60)), 10),
	"s",
]) if {
	is_number(x)
	x < 5400
} else := concat("", [
	format_int(floor(x / 3600), 10),
	"h ",
	format_int(floor((x - (floor(x / 3600) * 3600)) / 60), 10),
	"m",
]) if {
	is_number(x)
	x < 1000000000
} else := "n/a"

# evalue renders an e-value; anything above a million is simply "> 1000000".
evalue(e) := "> 1000000" if {
	is_number(e)
	e > 1000000
} else := int(e) if {
	is_number(e)
	e >= 100
} else := num(e)

# text is x when it is a string, else the fallback: concat() with a non-string
# fails, and a failed message must never take its deny reason down with it.
text(x, fallback) := x if {
	is_string(x)
} else := fallback

# inverse(alpha) is the e-value a sequential test must reach to reject at level alpha.
inverse(x) := 1 / x if {
	is_number(x)
	x > 0
} else := null

# number(x) is x when it is a number and undefined otherwise. Comparing through it
# means a mistyped value never fires a rule (the contract rule reports it instead)
# and never meets the engines' different cross-type ordering.
number(x) := x if is_number(x)

# --- the input contract ----------------------------------------------------
#
# typed_reasons(doc, paths, type) returns one reason for every path whose value
# is missing (absent or null) or not of the type ("number", "string", "boolean");
# choice_reasons(doc, path, allowed) one if the value is not one of `allowed`.
# They are cheap when everything is in order, which is nearly always.
typed_reasons(doc, paths, type) := {reason |
	some path in paths
	value := object.get(doc, path, null)
	type_name(value) != type
	reason := field_reason(path, value, type)
}

choice_reasons(doc, path, allowed) := {reason |
	value := object.get(doc, path, null)
	not value in allowed
	reason := field_reason(path, value, allowed)
}

field_reason(path, value, expected) := {
	"rule": "missing_field",
	"message": concat("", ["input field ", concat(".", path), " is missing"]),
	"observed": null,
	"threshold": expected,
} if {
	value == null
} else := {
	"rule": "invalid_field",
	"message": concat("", [
		"input field ",
		concat(".", path),
		" is ",
		described(value),
		", expected ",
		expected_words(expected),
	]),
	"observed": value,
	"threshold": expected,
}

# described names a wrong value without printing numbers (the engines print them differently).
described(value) := concat("", ["\"", value, "\""]) if {
	is_string(value)
} else := concat(" ", ["a", type_name(value)])

expected_words(expected) := concat(" ", ["a", expected]) if {
	is_string(expected)
} else := concat("", ["one of ", concat(", ", expected)])
