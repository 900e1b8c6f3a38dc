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
# The numbers come from the CLI's sequential statistics (docs/policy-input.md):
# statistics.harm is the rollout's evidence of harm against 1/alpha, and each test
# says whether it carries that harm, and (errors, latency) whether the step has
# passed it. A rule added in another file of this package (same three sets) takes
# part with no code change. Thresholds come from the input (the manifest), never
# from this file. A hold never becomes a rollback here: lack of evidence is no harm.
package swiftdeploy.canary

import data.swiftdeploy.lib

decision := {
	"allow": verdict == "promote",
	"verdict": verdict,
	"reasons": reasons,
}

verdict := "rollback" if {
	count(deny) > 0
} else := "hold" if {
	count(hold) > 0
} else := "promote" if {
	count(promote) > 0
} else := "hold"

reasons := [reason | some reason in deny] if {
	verdict == "rollback"
} else := held if {
	verdict == "hold"
} else := [reason | some reason in promote]

held := [reason | some reason in hold] if {
	count(hold) > 0
} else := [{
	"rule": "no_evidence",
	"message": "no rule found evidence to promote",
	"observed": null,
	"threshold": null,
}]

tracks := ["canary", "stable"]

dimensions := ["errors", "latency"]

tests := ["errors", "latency", "error_rate", "p99"]

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
			"no ",
			track,
			" requests in this step yet (",
			detail(track, "nothing counted"),
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

# --- harm: the rollout's evidence reached 1/alpha ------------------------------
# One reason per test that carries the harm. A reason's observed is the test's
# e-value and its threshold is alpha: reasons carry only input numbers, never
# computed ones, so both engines report them to the last digit.

deny contains reason if {
	input.statistics.harm.verdict == "harm"
	some test in tests
	stat := input.statistics[test]
	stat.verdict == "harm"
	reason := {
		"rule": harm_rule[test],
		"message": concat("", [harm_text(test, stat), "; ", evidence_text]),
		"observed": object.get(stat, "e_value", null),
		"threshold": object.get(input, "alpha", null),
	}
}

# object.get needs an object in both engines; a mistyped one is reported by the contract
harm := input.statistics.harm if {
	is_object(input.statistics.harm)
} else := {}

limits := input.thresholds if {
	is_object(input.thresholds)
} else := {}

harm_rule := {
	"errors": "errors_harm",
	"latency": "latency_harm",
	"error_rate": "max_error_rate",
	"p99": "max_p99_ms",
}

evidence_text := concat("", [
	"evidence of harm ",
	lib.evalue(object.get(harm, "e_value", null)),
	" >= ",
	lib.evalue(object.get(harm, "threshold", null)),
	" = 1/alpha (alpha ",
	lib.small(object.get(input, "alpha", null)),
	", a false rollback rate per rollout)",
])

harm_text("errors", stat) := concat("", [
	"canary errors worse than stable: ",
	lib.int(object.get(stat, "canary_events", null)),
	" errors in ",
	lib.int(object.get(stat, "canary_n", null)),
	" canary requests, stable ",
	lib.int(object.get(stat, "stable_events", null)),
	" in ",
	lib.int(object.get(stat, "stable_n", null)),
	" (e-value ",
	lib.evalue(object.get(stat, "e_value", null)),
	")",
])

harm_text("latency", stat) := concat("", [
	"canary slower than stable: ",
	lib.int(object.get(stat, "canary_events", null)),
	" of ",
	lib.int(object.get(stat, "canary_n", null)),
	" canary requests slower than ",
	lib.ms(object.get(stat, "slow_above_ms", null)),
	", stable ",
	lib.int(object.get(stat, "stable_events", null)),
	" of ",
	lib.int(object.get(stat, "stable_n", null)),
	" (e-value ",
	lib.evalue(object.get(stat, "e_value", null)),
	")",
])

harm_text("error_rate", stat) := concat("", [
	"canary error rate above ",
	lib.pct(object.get(limits, "max_error_rate", null)),
	" (thresholds.max_error_rate): ",
	lib.int(object.get(stat, "canary_events", null)),
	" errors in ",
	lib.int(object.get(stat, "canary_n", null)),
	" requests (e-value ",
	lib.evalue(object.get(stat, "e_value", null)),
	")",
])

harm_text("p99", stat) := concat("", [
	"canary p99 above ",
	lib.ms(object.get(limits, "max_p99_ms", null)),
	" (thresholds.max_p99_ms): ",
	lib.int(object.get(stat, "canary_events", null)),
	" of ",
	lib.int(object.get(stat, "canary_n", null)),
	" requests slower than ",
	lib.ms(object.get(stat, "slow_above_ms", null)),
	", more than 1% (e-value ",
	lib.evalue(object.get(stat, "e_value", null)),
	")",
])

# --- evidence for a pass ---------------------------------------------------------

hold contains reason if {
	some dimension in dimensions
	stat := input.statistics[dimension]
	stat.verdict == "continue"
	reason := {
		"rule": "needs_evidence",
		"message": needs_text(dimension, stat),
		"observed": object.get(stat, "canary_n", null),
		"threshold": object.get(stat, "needed", null),
	}
}

# The canary's warm-up: its latency is measured but not tested yet.
needs_text(dimension, stat) := concat("", [
	dimension,
	": ",
	lib.text(object.get(stat, "note", null), "warming up"),
]) if {
	object.get(stat, "warming_up", false) == true
} else := concat("", [
	dimension,
	": ",
	lib.int(stat.remaining),
	" more canary requests to catch ",
	lib.text(object.get(stat, "regression", null), "the regression"),
	" with ",
	power_pct,
	" power",
	eta_text(stat),
	", or a no-harm e-value of ",
	lib.evalue(object.get(stat, "no_harm_threshold", null)),
	" (now ",
	lib.evalue(object.get(stat, "e_value_no_harm", null)),
	"); to decide sooner: more traffic, a larger policy.detect.",
	dimension,
	", or a larger policy.beta",
]) if {
	is_number(stat.remaining)
} else := concat("", [
	dimension,
	": ",
	lib.text(object.get(stat, "note", null), "power cannot be planned yet"),
	"; needs a no-harm e-value of ",
	lib.evalue(object.get(stat, "no_harm_threshold", null)),
	" (now ",
	lib.evalue(object.get(stat, "e_value_no_harm", null)),
	")",
])

power_pct := concat("", [lib.num((1 - input.beta) * 100), "%"]) if {
	is_number(input.beta)
} else := "n/a"

eta_text(stat) := concat("", [
	" (about ",
	lib.duration(stat.eta_s),
	" at ",
	lib.num(stat.canary_rps),
	" req/s)",
]) if {
	is_number(stat.eta_s)
	is_number(stat.canary_rps)
} else := ""

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

compared if {
	input.canary.status == "ok"
	input.stable.status == "ok"
}

# (counted rather than `every`, which rego-cpp 1.5.2 does not support)
promote contains reason if {
	compared
	count([d | some d in dimensions; input.statistics[d].verdict == "pass"]) == count(dimensions)
	lib.number(input.step.elapsed_s) >= lib.number(input.step.min_duration_s)
	reason := {
		"rule": "passed",
		"message": concat("", [
			step_name,
			" passed after ",
			lib.seconds(input.step.elapsed_s),
			" and ",
			lib.int(input.canary.requests),
			" canary requests: ",
			concat("; ", [passed_text(d, input.statistics[d]) | some d in dimensions]),
		]),
		"observed": input.step.elapsed_s,
		"threshold": input.step.min_duration_s,
	}
}

passed_text(dimension, stat) := concat("", [
	dimension,
	" by power (",
	lib.text(object.get(stat, "regression", null), "the regression"),
	" would have been caught with ",
	power_pct,
	" power by ",
	lib.int(object.get(stat, "needed", null)),
	" canary requests)",
]) if {
	stat.passed_by == "power"
} else := concat("", [
	dimension,
	" by no harm (e-value ",
	lib.evalue(object.get(stat, "e_value_no_harm", null)),
	" >= ",
	lib.evalue(object.get(stat, "no_harm_threshold", null)),
	" = 1/beta)",
]) if {
	stat.passed_by == "no_harm"
} else := concat("", [dimension, " by an earlier step of this rollout"]) if {
	stat.passed_by == "earlier_step"
} else := concat("", [dimension, " by hand"])

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

number_fields := array.concat(
	array.concat(step_number_fields, track_number_fields),
	statistics_number_fields,
)

step_number_fields := [
	["thresholds", "max_error_rate"],
	["thresholds", "max_p99_ms"],
	["alpha"],
	["beta"],
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
	some key in ["requests", "errors", "error_rate"]
]

statistics_number_fields := array.concat(
	[["statistics", "harm", "e_value"], ["statistics", "harm", "threshold"]],
	[["statistics", test, key] |
		some test in tests
		some key in ["e_value", "weight", "canary_n", "canary_events"]
	],
)

choice_fields := array.concat(
	[
		[["canary", "status"], statuses],
		[["stable", "status"], statuses],
		[["statistics", "harm", "verdict"], ["harm", "none"]],
	],
	[[["statistics", test, "verdict"], ["harm", "pass", "continue"]] | some test in tests],
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
	input.canary.status in statuses
	input.stable.status in statuses
	input.statistics.harm.verdict in ["harm", "none"]
	count([t | some t in tests; input.statistics[t].verdict in ["harm", "pass", "continue"]]) == count(tests)
}

numbers_present if {
	is_number(input.thresholds.max_error_rate)
	is_number(input.thresholds.max_p99_ms)
	is_number(input.alpha)
	is_number(input.beta)
	is_number(input.step.index)
	is_number(input.step.weight)
	is_number(input.step.elapsed_s)
	is_number(input.step.min_duration_s)
	is_number(input.step.max_duration_s)
	track_numbers_present("canary")
	track_numbers_present("stable")
	is_number(input.statistics.harm.e_value)
	is_number(input.statistics.harm.threshold)
	count([t | some t in tests; statistic_numbers_present(input.statistics[t])]) == count(tests)
}

track_numbers_present(track) if input[track].status != "ok"

track_numbers_present(track) if {
	is_number(input[track].requests)
	is_number(input[track].errors)
	is_number(input[track].error_rate)
}

statistic_numbers_present(stat) if {
	is_number(stat.e_value)
	is_number(stat.weight)
	is_number(stat.canary_n)
	is_number(stat.canary_events)
}
