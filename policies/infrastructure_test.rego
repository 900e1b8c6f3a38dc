package swiftdeploy.infrastructure_test

import data.swiftdeploy.infrastructure

base := {
	"action": "deploy",
	"thresholds": {
		"max_error_rate": 0.01, "max_p99_ms": 500,
		"min_disk_free_gb": 1.0, "max_load_per_core": 4.0, "min_mem_available_pct": 5.0,
	},
	"host": {
		"disk_free_gb": 80.1, "load_per_core": 0.4, "mem_available_pct": 93.2,
		"cpu_count": 2, "state_dir": "/srv/app/.swiftdeploy",
	},
}

decide(doc) := decision if {
	decision := infrastructure.decision with input as doc
}

with_host(changes) := object.union(base, {"host": changes})

rules(decision) := {reason.rule | some reason in decision.reasons}

test_healthy_host_is_allowed if {
	decision := decide(base)
	decision.allow == true
	decision.verdict == "promote"
	decision.reasons == [{
		"rule": "host_ok",
		"message": "host checks passed: 80.1 GB disk free, load 0.40 per core, 93.2% memory available",
		"observed": null,
		"threshold": null,
	}]
}

test_canary_action_is_allowed if {
	decide(object.union(base, {"action": "canary"})).allow
}

# --- disk --------------------------------------------------------------------------

test_disk_exactly_at_minimum_is_allowed if {
	decide(with_host({"disk_free_gb": 1.0})).allow
}

test_disk_below_minimum_is_refused if {
	decision := decide(with_host({"disk_free_gb": 0.42}))
	decision.allow == false
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "min_disk_free_gb",
		"message": "only 0.4 GB of disk free for /srv/app/.swiftdeploy, needs 1.0 GB",
		"observed": 0.42,
		"threshold": 1.0,
	}]
}

test_disk_threshold_comes_from_input if {
	doc := object.union(base, {"thresholds": {"min_disk_free_gb": 100}})
	rules(decide(doc)) == {"min_disk_free_gb"}
}

# --- load --------------------------------------------------------------------------

test_load_exactly_at_maximum_is_allowed if {
	decide(with_host({"load_per_core": 4.0})).allow
}

test_load_above_maximum_is_refused if {
	decision := decide(with_host({"load_per_core": 4.01}))
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "max_load_per_core",
		"message": "load 4.01 per core > 4.00 (2 CPUs)",
		"observed": 4.01,
		"threshold": 4.0,
	}]
}

# --- memory ------------------------------------------------------------------------

test_memory_exactly_at_minimum_is_allowed if {
	decide(with_host({"mem_available_pct": 5})).allow
}

test_memory_below_minimum_is_refused if {
	decision := decide(with_host({"mem_available_pct": 4.96}))
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "min_mem_available_pct",
		"message": "only 4.96% of memory available, needs 5.00%",
		"observed": 4.96,
		"threshold": 5.0,
	}]
}

test_every_failing_check_is_reported if {
	decision := decide(with_host({"disk_free_gb": 0, "load_per_core": 9, "mem_available_pct": 1}))
	rules(decision) == {"min_disk_free_gb", "max_load_per_core", "min_mem_available_pct"}
	decision.allow == false
}

# --- the input contract ------------------------------------------------------------

test_missing_host_field_is_refused if {
	decision := decide(json.remove(base, ["host/disk_free_gb"]))
	decision.verdict == "rollback"
	decision.reasons == [{
		"rule": "missing_field",
		"message": "input field host.disk_free_gb is missing",
		"observed": null,
		"threshold": "number",
	}]
}

test_null_field_counts_as_missing if {
	rules(decide(with_host({"load_per_core": null}))) == {"missing_field"}
}

test_missing_threshold_is_refused if {
	decision := decide(json.remove(base, ["thresholds/max_load_per_core"]))
	decision.allow == false
	decision.reasons[0].message == "input field thresholds.max_load_per_core is missing"
}

test_mistyped_field_is_refused_and_not_compared if {
	decision := decide(with_host({"disk_free_gb": "80"}))
	decision.reasons == [{
		"rule": "invalid_field",
		"message": "input field host.disk_free_gb is \"80\", expected a number",
		"observed": "80",
		"threshold": "number",
	}]
}

test_unknown_action_is_refused if {
	decision := decide(object.union(base, {"action": "destroy"}))
	decision.reasons == [{
		"rule": "invalid_field",
		"message": "input field action is \"destroy\", expected one of deploy, canary",
		"observed": "destroy",
		"threshold": ["deploy", "canary"],
	}]
}

test_empty_input_is_refused if {
	decision := decide({})
	decision.allow == false
	count(decision.reasons) == 9
	rules(decision) == {"missing_field"}
}

test_disk_reason_survives_a_missing_state_dir if {
	decision := decide(with_host({"disk_free_gb": 0.5, "state_dir": null}))
	rules(decision) == {"min_disk_free_gb", "missing_field"}
	reason := [r | some r in decision.reasons; r.rule == "min_disk_free_gb"][0]
	reason.message == "only 0.5 GB of disk free for the state directory, needs 1.0 GB"
}
