package swiftdeploy.canary_test

import data.swiftdeploy.canary

# A step that has earned promotion, as the CLI builds it (tests/support/inputs.py,
# `promotable`, rounded); each test changes one thing.
base := {
	"thresholds": {
		"max_error_rate": 0.01, "max_p99_ms": 500,
		"min_disk_free_gb": 1.0, "max_load_per_core": 4.0, "min_mem_available_pct": 5.0,
	},
	"alpha": 0.01,
	"beta": 0.1,
	"detect": {"errors": "+1 point", "latency_ms": 100},
	"step": {"index": 0, "weight": 20, "elapsed_s": 40, "min_duration_s": 30, "max_duration_s": 600},
	"canary": {
		"status": "ok", "detail": "", "requests": 3000, "errors": 15, "error_rate": 0.005,
		"p50_ms": 25.0, "p90_ms": 45.0, "p99_ms": 49.5, "healthy": true,
	},
	"stable": {
		"status": "ok", "detail": "", "requests": 12000, "errors": 60, "error_rate": 0.005,
		"p50_ms": 25.0, "p90_ms": 45.0, "p99_ms": 49.5, "healthy": true,
	},
	"statistics": {
		"harm": {"e_value": 0.19, "threshold": 100, "verdict": "none"},
		"errors": {
			"kind": "compare", "verdict": "pass", "passed_by": "no_harm", "e_value": 0.078,
			"weight": 0.6, "e_value_no_harm": 617, "no_harm_threshold": 10, "needed": 3296,
			"remaining": 296, "eta_s": 3.95, "canary_rps": 75, "canary_n": 3000,
			"canary_events": 15, "stable_n": 12000, "stable_events": 60, "note": "",
			"regression": "+1 point",
		},
		"latency": {
			"kind": "compare", "verdict": "pass", "passed_by": "power", "e_value": 0.19,
			"weight": 0.2, "e_value_no_harm": 10948156, "no_harm_threshold": 10, "needed": 2160,
			"remaining": 0, "eta_s": 0, "canary_rps": 75, "canary_n": 3000, "canary_events": 3,
			"stable_n": 12000, "stable_events": 12, "note": "", "regression": "+100 ms at p99",
			"slow_above_ms": 200,
		},
		"error_rate": {
			"kind": "limit", "verdict": "continue", "e_value": 0.059, "weight": 0.1,
			"canary_n": 3000, "canary_events": 15, "limit": 0.01,
		},
		"p99": {
			"kind": "limit", "verdict": "continue", "e_value": 1, "weight": 0.1,
			"canary_n": 3000, "canary_events": 0, "limit": 0.01, "slow_above_ms": 500,
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

harmed(test, stat) := {"statistics": {
	"harm": {"e_value": 250, "verdict": "harm"},
	test: object.union({"verdict": "harm"}, stat),
}}

# --- promotion ---------------------------------------------------------------------

test_healthy_step_is_promoted if {
	decision := decide({})
	decision.allow == true
	decision.verdict == "promote"
	decision.reasons == [{
		"rule": "passed",
		"message": "step 1 (20.0% of traffic) passed after 40s and 3000 canary requests: errors by no harm (e-value 617 >= 10 = 1/beta); latency by power (+100 ms at p99 would have been caught with 90% power by 2160 canary requests)",
		"observed": 40,
		"threshold": 30,
	}]
}

test_each_way_of_passing_is_named if {
	decision := decide({"statistics": {
		"errors": {"passed_by": "earlier_step"},
		"latency": {"passed_by": "hand"},
	}})
	decision.verdict == "promote"
	contains(decision.reasons[0].message, "errors by an earlier step of this rollout; latency by hand")
}

test_exactly_min_duration_promotes if {
	decide({"step": {"elapsed_s": 30}}).verdict == "promote"
}

test_before_min_duration_holds if {
	decision := decide({"step": {"elapsed_s": 12.5}})
	decision.verdict == "hold"
	reason(decision, "min_duration").message == "step 1 (20.0% of traffic) has run 12.5s of its minimum 30s"
}

test_one_dimension_passed_is_not_enough if {
	decision := decide({"statistics": {"latency": {"verdict": "continue", "passed_by": null, "remaining": 1200, "eta_s": 16}}})
	decision.verdict == "hold"
	rules(decision) == {"needs_evidence"}
}

test_a_provider_error_blocks_promotion if {
	decision := decide({"stable": {"status": "provider_error", "detail": "nginx did not answer"}})
	decision.verdict == "hold"
	reason(decision, "provider_error").message == "stable metrics provider failed: nginx did not answer"
}

test_no_promote_reason_means_hold if {
	decision := decide({"canary": {"status": "no_data", "detail": "0 requests"}})
	decision.verdict == "hold"
	reason(decision, "no_data").message == "no canary requests in this step yet (0 requests)"
}

# --- holding, with what it takes ------------------------------------------------------

test_undecided_dimension_says_how_many_requests_and_how_long if {
	decision := decide({"statistics": {"errors": {
		"verdict": "continue", "passed_by": null, "remaining": 2480, "eta_s": 496,
		"canary_rps": 5, "e_value_no_harm": 1.3,
	}}})
	decision.verdict == "hold"
	decision.reasons == [{
		"rule": "needs_evidence",
		"message": "errors: 2480 more canary requests to catch +1 point with 90% power (about 8m 16s at 5 req/s), or a no-harm e-value of 10 (now 1.3); to decide sooner: more traffic, a larger policy.detect.errors, or a larger policy.beta",
		"observed": 3000,
		"threshold": 3296,
	}]
}

test_an_unplannable_dimension_says_why if {
	decision := decide({"statistics": {"latency": {
		"verdict": "continue", "passed_by": null, "remaining": null, "needed": null,
		"eta_s": null, "e_value_no_harm": 2.5,
		"note": "the stable itself has about 3.1% of requests slower than 200 ms, so a canary p99 there is not a regression",
	}}})
	reason(decision, "needs_evidence").message == "latency: the stable itself has about 3.1% of requests slower than 200 ms, so a canary p99 there is not a regression; needs a no-harm e-value of 10 (now 2.5)"
}

test_a_warming_canary_says_what_is_left_of_its_warmup if {
	decision := decide({"statistics": {"latency": {
		"verdict": "continue", "passed_by": null, "remaining": 1200, "needed": 1200,
		"eta_s": 40, "e_value_no_harm": 1, "warming_up": true,
		"note": "warming up: 34 s left; latency is tested after",
	}}})
	decision.verdict == "hold"
	reason(decision, "needs_evidence").message == "latency: warming up: 34 s left; latency is tested after"
}

test_a_hold_never_turns_into_a_rollback_past_max_duration if {
	decision := decide({
		"step": {"elapsed_s": 5000},
		"statistics": {"errors": {"verdict": "continue", "passed_by": null}},
	})
	decision.verdict == "hold"
	not "timeout" in rules(decision)
}

# --- rolling back on evidence of harm -------------------------------------------------

test_errors_harm_rolls_back_naming_the_counts_and_alpha if {
	decision := decide(harmed("errors", {
		"e_value": 412, "canary_n": 412, "canary_events": 21, "stable_n": 1650, "stable_events": 5,
	}))
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "errors_harm",
		"message": "canary errors worse than stable: 21 errors in 412 canary requests, stable 5 in 1650 (e-value 412); evidence of harm 250 >= 100 = 1/alpha (alpha 0.01, a false rollback rate per rollout)",
		"observed": 412,
		"threshold": 0.01,
	}]
}

test_latency_harm_rolls_back if {
	decision := decide(harmed("latency", {"e_value": 1250, "canary_events": 40, "canary_n": 40}))
	reason(decision, "latency_harm").message == "canary slower than stable: 40 of 40 canary requests slower than 200 ms, stable 12 of 12000 (e-value 1250); evidence of harm 250 >= 100 = 1/alpha (alpha 0.01, a false rollback rate per rollout)"
}

test_error_rate_above_its_limit_rolls_back if {
	decision := decide(harmed("error_rate", {"e_value": 2500, "canary_events": 90, "canary_n": 3000}))
	reason(decision, "max_error_rate").message == "canary error rate above 1.0% (thresholds.max_error_rate): 90 errors in 3000 requests (e-value 2500); evidence of harm 250 >= 100 = 1/alpha (alpha 0.01, a false rollback rate per rollout)"
}

test_p99_above_its_limit_rolls_back if {
	decision := decide(harmed("p99", {"e_value": 2500, "canary_events": 90}))
	reason(decision, "max_p99_ms").message == "canary p99 above 500 ms (thresholds.max_p99_ms): 90 of 3000 requests slower than 500 ms, more than 1% (e-value 2500); evidence of harm 250 >= 100 = 1/alpha (alpha 0.01, a false rollback rate per rollout)"
}

test_every_test_that_carries_the_harm_is_a_reason if {
	decision := decide({"statistics": {
		"harm": {"e_value": 900, "verdict": "harm"},
		"errors": {"verdict": "harm", "e_value": 1000},
		"error_rate": {"verdict": "harm", "e_value": 3000},
	}})
	rules(decision) == {"errors_harm", "max_error_rate"}
}

test_a_test_verdict_alone_is_not_harm if {
	# harm is the rollout's combined evidence; without it nothing rolls back
	decide({"statistics": {"errors": {"verdict": "harm"}}}).verdict != "rollback"
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

test_harm_wins_over_a_failed_provider if {
	decision := decide(object.union(harmed("errors", {}), {"canary": {"status": "provider_error"}}))
	decision.verdict == "rollback"
}

# --- the input contract -------------------------------------------------------------

test_missing_field_holds_and_never_allows if {
	decision := decide_doc(json.remove(base, ["canary/requests"]))
	decision.allow == false
	reason(decision, "missing_field").message == "input field canary.requests is missing"
}

test_missing_statistics_hold if {
	decision := decide_doc(json.remove(base, ["statistics"]))
	decision.allow == false
	rules(decision) == {"missing_field"}
}

test_mistyped_number_is_invalid_and_not_compared if {
	decision := decide({"canary": {"requests": "3000"}})
	decision.verdict == "hold"
	reason(decision, "invalid_field").message == "input field canary.requests is \"3000\", expected a number"
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
	count(contract_paths) == 44
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
