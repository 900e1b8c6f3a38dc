package swiftdeploy.canary_test

import data.swiftdeploy.canary

# A step that has earned promotion; each test changes one thing.
base := {
	"thresholds": {
		"max_error_rate": 0.01, "max_p99_ms": 500, "min_requests": 50,
		"min_disk_free_gb": 1.0, "max_load_per_core": 4.0, "min_mem_available_pct": 5.0,
	},
	"alpha": 0.01,
	"step": {
		"index": 0, "weight": 20, "elapsed_s": 30,
		"min_duration_s": 10, "max_duration_s": 60, "on_timeout": "rollback",
	},
	"canary": {
		"status": "ok", "detail": "", "requests": 412, "errors": 2, "error_rate": 0.005,
		"p50_ms": 12.0, "p90_ms": 40.0, "p99_ms": 120.0, "healthy": true,
	},
	"stable": {
		"status": "ok", "detail": "", "requests": 1650, "errors": 5, "error_rate": 0.003,
		"p50_ms": 11.0, "p90_ms": 38.0, "p99_ms": 110.0, "healthy": true,
	},
	"statistics": {
		"errors": {
			"e_value": 0.4, "p_value": 0.6, "verdict": "no_harm", "effect": 0.002, "e_value_no_harm": 230,
			"ci_low": -0.004, "ci_high": 0.008,
			"canary_n": 412, "canary_events": 2, "stable_n": 1650, "stable_events": 5,
		},
		"latency": {
			"e_value": 0.7, "p_value": 0.5, "verdict": "no_harm", "effect": 0.001, "e_value_no_harm": 150,
			"ci_low": -0.01, "ci_high": 0.012,
			"canary_n": 412, "canary_events": 4, "stable_n": 1650, "stable_events": 15,
		},
	},
}

decide(changes) := decision if {
	decision := canary.decision with input as object.union(base, changes)
}

decide_doc(doc) := decision if {
	decision := canary.decision with input as doc
}

rules(decision) := {reason.rule | some reason in decision.reasons}

reason(decision, rule) := r if {
	some r in decision.reasons
	r.rule == rule
}

test_healthy_canary_is_promoted if {
	decision := decide({})
	decision.allow == true
	decision.verdict == "promote"
	decision.reasons == [{
		"rule": "no_harm",
		"message": "no harm found in 412 canary requests after 30s (minimum 10s): no-harm e-values, errors 230 and latency 150, each >= 1/alpha",
		"observed": 30,
		"threshold": 10,
	}]
}

# --- track status --------------------------------------------------------------------

test_canary_provider_error_holds_and_names_the_error if {
	decision := decide({"canary": {"status": "provider_error", "detail": "prometheus: connection refused", "requests": null}})
	decision.verdict == "hold"
	decision.allow == false
	reason(decision, "provider_error").message == "canary metrics provider failed: prometheus: connection refused"
}

test_stable_provider_error_holds if {
	decision := decide({"stable": {"status": "provider_error", "detail": ""}})
	decision.verdict == "hold"
	reason(decision, "provider_error").message == "stable metrics provider failed: no detail given"
}

test_canary_without_data_holds_with_not_enough_data if {
	decision := decide({"canary": {
		"status": "no_data", "requests": null, "errors": null, "error_rate": null,
		"p50_ms": null, "p90_ms": null, "p99_ms": null,
	}})
	decision.verdict == "hold"
	rules(decision) == {"no_data"}
	reason(decision, "no_data").message == "not enough data: no canary metrics yet (no requests seen)"
}

test_stable_without_data_holds if {
	decision := decide({"stable": {"status": "no_data", "detail": "window is empty"}})
	decision.verdict == "hold"
	reason(decision, "no_data").message == "not enough data: no stable metrics yet (window is empty)"
}

test_unhealthy_canary_rolls_back if {
	decision := decide({"canary": {"healthy": false}})
	decision.verdict == "rollback"
	rules(decision) == {"canary_unhealthy"}
}

test_unhealthy_canary_rolls_back_even_without_data if {
	decision := decide({"canary": {"healthy": false, "status": "no_data"}})
	decision.verdict == "rollback"
}

# --- min_requests ----------------------------------------------------------------------

test_too_few_requests_hold if {
	decision := decide({"canary": {"requests": 49}})
	decision.verdict == "hold"
	decision.reasons == [{
		"rule": "min_requests",
		"message": "not enough data: 49 canary requests, needs 50",
		"observed": 49,
		"threshold": 50,
	}]
}

test_exactly_min_requests_is_enough if {
	decide({"canary": {"requests": 50}}).verdict == "promote"
}

test_absolute_thresholds_wait_for_min_requests if {
	decision := decide({"canary": {"requests": 10, "error_rate": 0.5, "p99_ms": 5000}})
	decision.verdict == "hold"
	rules(decision) == {"min_requests"}
}

# --- max_error_rate -------------------------------------------------------------------

test_error_rate_above_maximum_rolls_back if {
	decision := decide({"canary": {"error_rate": 0.051}})
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "max_error_rate",
		"message": "canary error rate 5.1% > 1.0% (stable 0.3%; 412 requests)",
		"observed": 0.051,
		"threshold": 0.01,
	}]
}

test_error_rate_at_maximum_passes if {
	decide({"canary": {"error_rate": 0.01}}).verdict == "promote"
}

test_error_rate_just_above_maximum_shows_enough_digits if {
	decision := decide({"canary": {"error_rate": 0.0101}})
	reason(decision, "max_error_rate").message == "canary error rate 1.01% > 1.00% (stable 0.3%; 412 requests)"
}

test_error_rate_threshold_comes_from_input if {
	decision := decide({"thresholds": {"max_error_rate": 0.001}})
	rules(decision) == {"max_error_rate"}
}

# --- max_p99_ms -----------------------------------------------------------------------

test_p99_above_maximum_rolls_back if {
	decision := decide({"canary": {"p99_ms": 812.4}})
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "max_p99_ms",
		"message": "canary p99 latency 812 ms > 500 ms (stable 110 ms; 412 requests)",
		"observed": 812.4,
		"threshold": 500,
	}]
}

test_p99_at_maximum_passes if {
	decide({"canary": {"p99_ms": 500}}).verdict == "promote"
}

test_p99_just_above_maximum_shows_a_decimal if {
	decision := decide({"canary": {"p99_ms": 500.2}})
	reason(decision, "max_p99_ms").message == "canary p99 latency 500.2 ms > 500.0 ms (stable 110 ms; 412 requests)"
}

# --- canary against stable --------------------------------------------------------------

test_error_harm_rolls_back_with_e_value_and_alpha if {
	decision := decide({"statistics": {"errors": {
		"verdict": "harm", "e_value": 812.0,
		"canary_events": 21, "stable_events": 5,
	}}})
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "errors_harm",
		"message": "canary errors worse than stable: e-value 812 >= 100 = 1/alpha (alpha 0.01); canary 21 errors in 412 requests, stable 5 in 1650",
		"observed": 812.0,
		"threshold": 0.01,
	}]
}

test_latency_harm_rolls_back if {
	decision := decide({"alpha": 0.05, "statistics": {"latency": {"verdict": "harm", "e_value": 2500000}}})
	decision.verdict == "rollback"
	reason(decision, "latency_harm").message == "canary latency worse than stable: e-value > 1000000 >= 20 = 1/alpha (alpha 0.05); canary 4 of 412 requests slower than the latency SLO, stable 15 of 1650"
}

test_harm_still_rolls_back_when_numbers_are_missing if {
	decision := decide_doc(json.patch(base, [
		{"op": "replace", "path": "/statistics/errors/verdict", "value": "harm"},
		{"op": "remove", "path": "/statistics/errors/e_value"},
		{"op": "remove", "path": "/alpha"},
	]))
	decision.verdict == "rollback"
	reason(decision, "errors_harm").observed == null
}

test_continue_holds_as_inconclusive if {
	decision := decide({"statistics": {"errors": {"verdict": "continue", "e_value": 3.2}}})
	decision.verdict == "hold"
	decision.reasons == [{
		"rule": "inconclusive",
		"message": "no verdict yet on errors: e-value 3.2, harm needs 100 = 1/alpha",
		"observed": 3.2,
		"threshold": 0.01,
	}]
}

test_one_no_harm_is_not_enough if {
	decision := decide({"statistics": {"latency": {"verdict": "continue"}}})
	decision.verdict == "hold"
	rules(decision) == {"inconclusive"}
}

test_statistics_are_ignored_when_a_track_has_no_data if {
	decision := decide({
		"stable": {"status": "no_data"},
		"statistics": {"errors": {"verdict": "harm"}},
	})
	decision.verdict == "hold"
	rules(decision) == {"no_data"}
}

# --- duration, timeout and verdict aggregation ----------------------------------------------

test_before_min_duration_holds if {
	decision := decide({"step": {"elapsed_s": 9.9}})
	decision.verdict == "hold"
	decision.reasons == [{
		"rule": "min_duration",
		"message": "step 1 (20.0% of traffic) has run 9.9s of its minimum 10s",
		"observed": 9.9,
		"threshold": 10,
	}]
}

test_exactly_min_duration_promotes if {
	decide({"step": {"elapsed_s": 10}}).verdict == "promote"
}

test_inconclusive_at_max_duration_takes_on_timeout_rollback if {
	decision := decide({"step": {"elapsed_s": 60}, "statistics": {"errors": {"verdict": "continue"}}})
	decision.verdict == "rollback"
	decision.allow == false
	decision.reasons[0] == {
		"rule": "timeout",
		"message": "no decision after 60s (maximum 60s), so on_timeout applies: rollback",
		"observed": 60,
		"threshold": 60,
	}
	rules(decision) == {"timeout", "inconclusive"}
}

test_inconclusive_before_max_duration_holds if {
	decide({"step": {"elapsed_s": 59.9}, "statistics": {"errors": {"verdict": "continue"}}}).verdict == "hold"
}

test_on_timeout_hold_keeps_holding if {
	decision := decide({
		"step": {"elapsed_s": 75, "on_timeout": "hold"},
		"canary": {"status": "provider_error"},
	})
	decision.verdict == "hold"
	rules(decision) == {"timeout", "provider_error"}
}

test_timeout_does_not_override_a_rollback if {
	decision := decide({"step": {"elapsed_s": 90, "on_timeout": "hold"}, "canary": {"healthy": false}})
	decision.verdict == "rollback"
	rules(decision) == {"canary_unhealthy"}
}

test_timeout_does_not_override_a_promotion if {
	decide({"step": {"elapsed_s": 90}}).verdict == "promote"
}

test_worst_verdict_wins if {
	decision := decide({"canary": {"error_rate": 0.2}, "step": {"elapsed_s": 1}})
	decision.verdict == "rollback"
	rules(decision) == {"max_error_rate"}
}

test_extra_deny_rule_rolls_back if {
	extra := {"rule": "custom", "message": "custom rule", "observed": null, "threshold": null}
	decision := canary.decision with input as base with canary.deny as {extra}
	decision.verdict == "rollback"
	decision.reasons == [extra]
}

test_extra_hold_rule_holds if {
	extra := {"rule": "custom", "message": "custom rule", "observed": null, "threshold": null}
	decision := canary.decision with input as base with canary.hold as {extra}
	decision.verdict == "hold"
	decision.reasons == [extra]
}

test_no_promote_reason_means_hold if {
	decision := canary.decision with input as base with canary.promote as set()
	decision.verdict == "hold"
	rules(decision) == {"no_evidence"}
}

# --- the input contract -------------------------------------------------------------------

test_missing_field_holds_and_never_allows if {
	decision := decide_doc(json.remove(base, ["canary/p99_ms"]))
	decision.verdict == "hold"
	decision.allow == false
	decision.reasons == [{
		"rule": "missing_field",
		"message": "input field canary.p99_ms is missing",
		"observed": null,
		"threshold": "number",
	}]
}

test_missing_statistics_hold if {
	decision := decide_doc(json.remove(base, ["statistics"]))
	decision.allow == false
	rules(decision) == {"missing_field"}
	count(decision.reasons) == 12
}

test_missing_threshold_holds if {
	decision := decide_doc(json.remove(base, ["thresholds/max_error_rate"]))
	reason(decision, "missing_field").message == "input field thresholds.max_error_rate is missing"
	decision.allow == false
}

test_unknown_on_timeout_is_invalid if {
	decision := decide({"step": {"on_timeout": "sometimes"}})
	decision.reasons == [{
		"rule": "invalid_field",
		"message": "input field step.on_timeout is \"sometimes\", expected one of rollback, hold",
		"observed": "sometimes",
		"threshold": ["rollback", "hold"],
	}]
}

test_mistyped_number_is_invalid_and_not_compared if {
	decision := decide({"canary": {"requests": "412"}})
	decision.verdict == "hold"
	rules(decision) == {"invalid_field"}
	reason(decision, "invalid_field").message == "input field canary.requests is \"412\", expected a number"
}

test_mistyped_healthy_is_invalid if {
	decision := decide({"canary": {"healthy": "yes"}})
	reason(decision, "invalid_field").message == "input field canary.healthy is \"yes\", expected a boolean"
}

test_unknown_status_is_invalid if {
	decision := decide({"stable": {"status": "maybe"}})
	decision.allow == false
	reason(decision, "invalid_field").threshold == ["ok", "no_data", "provider_error"]
}

test_unknown_statistics_verdict_is_invalid if {
	decision := decide({"statistics": {"latency": {"verdict": "unsure"}}})
	decision.allow == false
	rules(decision) == {"invalid_field"}
}

test_empty_input_holds if {
	decision := decide_doc({})
	decision.verdict == "hold"
	rules(decision) == {"missing_field"}
}

test_provider_error_with_a_mistyped_detail_still_holds if {
	decision := decide({"canary": {"status": "provider_error", "detail": 42}})
	reason(decision, "provider_error").message == "canary metrics provider failed: no detail given"
	reason(decision, "invalid_field").message == "input field canary.detail is a number, expected a string"
}

# contract_kept (the quick check) must cover every field the contract checks.
contract_paths := paths if {
	numbers := canary.number_fields with input as base
	choices := canary.choice_fields with input as base
	paths := array.concat(
		array.concat(numbers, canary.string_fields),
		array.concat(canary.boolean_fields, [path | some [path, _] in choices]),
	)
}

test_every_contract_field_is_checked if {
	count(contract_paths) == 40
	every path in contract_paths {
		decision := decide_doc(json.remove(base, [path]))
		decision.allow == false
		messages := {r.message | some r in decision.reasons; r.rule == "missing_field"}
		messages == {concat("", ["input field ", concat(".", path), " is missing"])}
	}
}

test_every_contract_field_must_have_its_type if {
	every path in contract_paths {
		decision := decide_doc(json.patch(base, [{"op": "replace", "path": path, "value": [1]}]))
		decision.allow == false
		{r.rule | some r in decision.reasons} & {"invalid_field"} == {"invalid_field"}
	}
}
