# Canary gate: promote, hold or roll back the current step.
#
# Rules add reasons to three sets; `decision` aggregates them and the worst
# verdict wins (rollback > hold > promote):
#
#   deny    contains reason   the canary does harm: roll back
#   hold    contains reason   not enough evidence yet: keep the step running
#   promote contains reason   evidence that the step is good; promoting needs at
#                             least one promote reason and no deny or hold reason
#
# A rule added in another file of this package (same three sets) takes part with
# no code change. A hold that lasts until step.max_duration_s becomes
# step.on_timeout. Thresholds come from input.thresholds and input.alpha (the
# manifest), never from this file. Input and decision: docs/policy-input.md.
package swiftdeploy.canary

import data.swiftdeploy.lib

decision := {
	"allow": verdict == "promote",
	"verdict": verdict,
	"reasons": reasons,
}

base_verdict := "rollback" if {
	count(deny) > 0
} else := "hold" if {
	count(hold) > 0
} else := "promote" if {
	count(promote) > 0
} else := "hold"

verdict := input.step.on_timeout if {
	timed_out
} else := base_verdict

timed_out if {
	base_verdict == "hold"
	lib.number(input.step.elapsed_s) >= lib.number(input.step.max_duration_s)
	input.step.on_timeout in {"rollback", "hold"}
}

reasons := array.concat([timeout_reason], held) if {
	timed_out
} else := [reason | some reason in deny] if {
	base_verdict == "rollback"
} else := held if {
	base_verdict == "hold"
} else := [reason | some reason in promote]

held := [reason | some reason in hold] if {
	count(hold) > 0
} else := [{
	"rule": "no_evidence",
	"message": "no rule found evidence to promote",
	"observed": null,
	"threshold": null,
}]

timeout_reason := {
	"rule": "timeout",
	"message": concat("", [
		"no decision after ",
		lib.seconds(input.step.elapsed_s),
		" (maximum ",
		lib.seconds(input.step.max_duration_s),
		"), so on_timeout applies: ",
		input.step.on_timeout,
	]),
	"observed": input.step.elapsed_s,
	"threshold": input.step.max_duration_s,
}

tracks := ["canary", "stable"]

kinds := ["errors", "latency"]

# --- track status --------------------------------------------------------------

hold contains reason if {
	some track in tracks
	input[track].status == "provider_error"
	reason := {
		"rule": "provider_error",
		"message": concat("", [
			track,
			" metrics provider failed: ",
			detail(track, "no detail given"),
		]),
		"observed": "provider_error",
		"threshold": "ok",
	}
}

hold contains reason if {
	some track in tracks
	input[track].status == "no_data"
	reason := {
		"rule": "no_data",
		"message": concat("", [
			"not enough data: no ",
			track,
			" metrics yet (",
			detail(track, "no requests seen"),
			")",
		]),
		"observed": "no_data",
		"threshold": "ok",
	}
}

detail(track, fallback) := lib.text(input[track].detail, fallback) if {
	input[track].detail != ""
} else := fallback

deny contains reason if {
	input.canary.healthy == false
	reason := {
		"rule": "canary_unhealthy",
		"message": "canary is unhealthy: its instances fail their health checks",
		"observed": false,
		"threshold": true,
	}
}

# --- absolute thresholds (only once the canary has min_requests) --------------

hold contains reason if {
	input.canary.status == "ok"
	lib.number(input.canary.requests) < lib.number(input.thresholds.min_requests)
	reason := {
		"rule": "min_requests",
		"message": concat("", [
			"not enough data: ",
			lib.int(input.canary.requests),
			" canary requests, needs ",
			lib.int(input.thresholds.min_requests),
		]),
		"observed": input.canary.requests,
		"threshold": input.thresholds.min_requests,
	}
}

enough_canary_data if {
	input.canary.status == "ok"
	lib.number(input.canary.requests) >= lib.number(input.thresholds.min_requests)
}

deny contains reason if {
	enough_canary_data
	lib.number(input.canary.error_rate) > lib.number(input.thresholds.max_error_rate)
	shown := lib.pct_pair(input.canary.error_rate, input.thresholds.max_error_rate)
	reason := {
		"rule": "max_error_rate",
		"message": concat("", [
			"canary error rate ",
			shown[0],
			" > ",
			shown[1],
			" (stable ",
			stable_error_rate,
			"; ",
			lib.int(input.canary.requests),
			" requests)",
		]),
		"observed": input.canary.error_rate,
		"threshold": input.thresholds.max_error_rate,
	}
}

deny contains reason if {
	enough_canary_data
	lib.number(input.canary.p99_ms) > lib.number(input.thresholds.max_p99_ms)
	shown := lib.ms_pair(input.canary.p99_ms, input.thresholds.max_p99_ms)
	reason := {
		"rule": "max_p99_ms",
		"message": concat("", [
			"canary p99 latency ",
			shown[0],
			" > ",
			shown[1],
			" (stable ",
			stable_p99,
			"; ",
			lib.int(input.canary.requests),
			" requests)",
		]),
		"observed": input.canary.p99_ms,
		"threshold": input.thresholds.max_p99_ms,
	}
}

stable_error_rate := lib.pct(input.stable.error_rate) if {
	input.stable.status == "ok"
} else := "n/a"

stable_p99 := lib.ms(input.stable.p99_ms) if {
	input.stable.status == "ok"
} else := "n/a"

# --- canary against stable (sequential tests from the analysis) ----------------
# The analysis reports harm once an e-value reaches 1/alpha. A reason's observed is
# the e-value and its threshold is alpha itself: reasons carry only input numbers,
# never computed ones, so both engines report them to the last digit.

compared if {
	input.canary.status == "ok"
	input.stable.status == "ok"
}

deny contains reason if {
	compared
	some kind in kinds
	input.statistics[kind].verdict == "harm"
	stat := input.statistics[kind]
	reason := {
		"rule": concat("_", [kind, "harm"]),
		"message": concat("", [
			"canary ",
			kind,
			" worse than stable: e-value ",
			lib.evalue(object.get(stat, "e_value", null)),
			" >= ",
			alpha_evalue,
			" = 1/alpha (alpha ",
			lib.small(object.get(input, "alpha", null)),
			"); ",
			counts(kind, stat),
		]),
		"observed": object.get(stat, "e_value", null),
		"threshold": object.get(input, "alpha", null),
	}
}

hold contains reason if {
	compared
	some kind in kinds
	input.statistics[kind].verdict == "continue"
	stat := input.statistics[kind]
	reason := {
		"rule": "inconclusive",
		"message": concat("", [
			"no verdict yet on ",
			kind,
			": e-value ",
			lib.evalue(object.get(stat, "e_value", null)),
			", harm needs ",
			alpha_evalue,
			" = 1/alpha",
		]),
		"observed": object.get(stat, "e_value", null),
		"threshold": object.get(input, "alpha", null),
	}
}

# the e-value the analysis must reach to report harm, for messages
alpha_evalue := lib.evalue(lib.inverse(object.get(input, "alpha", null)))

counts("errors", stat) := concat("", [
	"canary ",
	lib.int(object.get(stat, "canary_events", null)),
	" errors in ",
	lib.int(object.get(stat, "canary_n", null)),
	" requests, stable ",
	lib.int(object.get(stat, "stable_events", null)),
	" in ",
	lib.int(object.get(stat, "stable_n", null)),
])

counts("latency", stat) := concat("", [
	"canary ",
	lib.int(object.get(stat, "canary_events", null)),
	" of ",
	lib.int(object.get(stat, "canary_n", null)),
	" requests slower than the latency SLO, stable ",
	lib.int(object.get(stat, "stable_events", null)),
	" of ",
	lib.int(object.get(stat, "stable_n", null)),
])

# --- duration and promotion ------------------------------------------------------

hold contains reason if {
	lib.number(input.step.elapsed_s) < lib.number(input.step.min_duration_s)
	reason := {
		"rule": "min_duration",
		"message": concat("", [
			step_name,
			" has run ",
			lib.seconds(input.step.elapsed_s),
			" of its minimum ",
			lib.seconds(input.step.min_duration_s),
		]),
		"observed": input.step.elapsed_s,
		"threshold": input.step.min_duration_s,
	}
}

promote contains reason if {
	compared
	input.statistics.errors.verdict == "no_harm"
	input.statistics.latency.verdict == "no_harm"
	lib.number(input.step.elapsed_s) >= lib.number(input.step.min_duration_s)
	reason := {
		"rule": "no_harm",
		"message": concat("", [
			"no harm found in ",
			lib.int(input.canary.requests),
			" canary requests after ",
			lib.seconds(input.step.elapsed_s),
			" (minimum ",
			lib.seconds(input.step.min_duration_s),
			"): no-harm e-values, errors ",
			lib.evalue(object.get(input.statistics.errors, "e_value_no_harm", null)),
			" and latency ",
			lib.evalue(object.get(input.statistics.latency, "e_value_no_harm", null)),
			", each >= 1/alpha",
		]),
		"observed": input.step.elapsed_s,
		"threshold": input.step.min_duration_s,
	}
}

step_name := concat("", [
	"step ",
	lib.int(input.step.index + 1),
	" (",
	lib.percent(input.step.weight),
	" of traffic)",
]) if {
	is_number(input.step.index)
} else := "this step"

# --- the input contract -----------------------------------------------------------
# A missing or mistyped field holds (never promotes), so a change in the CLI's
# input shape shows up at once. Hold rather than rollback: a healthy canary should
# not be rolled back for a bug in how its input was built.

hold contains reason if {
	not contract_kept
	some reason in lib.typed_reasons(input, number_fields, "number")
}

hold contains reason if {
	not contract_kept
	some reason in lib.typed_reasons(input, string_fields, "string")
}

hold contains reason if {
	not contract_kept
	some reason in lib.typed_reasons(input, boolean_fields, "boolean")
}

hold contains reason if {
	not contract_kept
	some [path, allowed] in choice_fields
	some reason in lib.choice_reasons(input, path, allowed)
}

string_fields := [["canary", "detail"], ["stable", "detail"]]

boolean_fields := [["canary", "healthy"], ["stable", "healthy"]]

number_fields := array.concat(array.concat(step_number_fields, track_number_fields), statistics_number_fields)

step_number_fields := [
	["thresholds", "max_error_rate"],
	["thresholds", "max_p99_ms"],
	["thresholds", "min_requests"],
	["alpha"],
	["step", "index"],
	["step", "weight"],
	["step", "elapsed_s"],
	["step", "min_duration_s"],
	["step", "max_duration_s"],
]

# A track's numbers are only usable (and required) when its status is ok.
track_number_fields := [[track, key] |
	some track in tracks
	input[track].status == "ok"
	some key in ["requests", "errors", "error_rate", "p50_ms", "p90_ms", "p99_ms"]
]

statistics_number_fields := [["statistics", kind, key] |
	compared
	some kind in kinds
	some key in ["e_value", "canary_n", "canary_events", "stable_n", "stable_events"]
]

choice_fields := array.concat(
	[
		[["step", "on_timeout"], ["rollback", "hold"]],
		[["canary", "status"], statuses],
		[["stable", "status"], statuses],
	],
	[[["statistics", kind, "verdict"], ["harm", "no_harm", "continue"]] | compared; some kind in kinds],
)

statuses := ["ok", "no_data", "provider_error"]

# contract_kept is the quick check that every field above is as expected, the usual
# case; only when it fails are the reasons worked out field by field (about 0.8 ms
# saved per decision in the embedded engine). canary_test.rego removes and mistypes
# each field of the lists above in turn, which keeps the two in step.
contract_kept if {
	numbers_present
	is_string(input.canary.detail)
	is_string(input.stable.detail)
	is_boolean(input.canary.healthy)
	is_boolean(input.stable.healthy)
	input.step.on_timeout in ["rollback", "hold"]
	input.canary.status in statuses
	input.stable.status in statuses
	verdicts_present
}

verdicts_present if not compared

verdicts_present if {
	input.statistics.errors.verdict in ["harm", "no_harm", "continue"]
	input.statistics.latency.verdict in ["harm", "no_harm", "continue"]
}

numbers_present if {
	is_number(input.thresholds.max_error_rate)
	is_number(input.thresholds.max_p99_ms)
	is_number(input.thresholds.min_requests)
	is_number(input.alpha)
	is_number(input.step.index)
	is_number(input.step.weight)
	is_number(input.step.elapsed_s)
	is_number(input.step.min_duration_s)
	is_number(input.step.max_duration_s)
	track_numbers_present("canary")
	track_numbers_present("stable")
	statistics_numbers_present
}

track_numbers_present(track) if input[track].status != "ok"

track_numbers_present(track) if {
	is_number(input[track].requests)
	is_number(input[track].errors)
	is_number(input[track].error_rate)
	is_number(input[track].p50_ms)
	is_number(input[track].p90_ms)
	is_number(input[track].p99_ms)
}

statistics_numbers_present if not compared

statistics_numbers_present if {
	statistic_numbers_present(input.statistics.errors)
	statistic_numbers_present(input.statistics.latency)
}

statistic_numbers_present(stat) if {
	is_number(stat.e_value)
	is_number(stat.canary_n)
	is_number(stat.canary_events)
	is_number(stat.stable_n)
	is_number(stat.stable_events)
}
