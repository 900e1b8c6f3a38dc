# Infrastructure gate: may this host take a deploy or a canary right now?
#
# Verdict "promote" allows the action, "rollback" refuses it. Every rule adds a
# reason to the `deny` set; a rule added in another file of this package, e.g.
#
#   deny contains reason if { ...; reason := {"rule": ..., "message": ...} }
#
# takes part with no code change. Thresholds come from input.thresholds (the
# manifest), never from this file. Input and decision: docs/policy-input.md.
package swiftdeploy.infrastructure

import data.swiftdeploy.lib

decision := {
	"allow": verdict == "promote",
	"verdict": verdict,
	"reasons": reasons,
}

verdict := "rollback" if {
	count(deny) > 0
} else := "promote"

reasons := [reason | some reason in deny] if {
	count(deny) > 0
} else := [host_ok]

host_ok := {
	"rule": "host_ok",
	"message": concat("", [
		"host checks passed: ",
		lib.fixed(host.disk_free_gb, 1),
		" GB disk free, load ",
		lib.fixed(host.load_per_core, 2),
		" per core, ",
		lib.percent(host.mem_available_pct),
		" memory available",
	]),
	"observed": null,
	"threshold": null,
}

host := object.get(input, "host", {})

thresholds := object.get(input, "thresholds", {})

# --- rules --------------------------------------------------------------------

deny contains reason if {
	lib.number(host.disk_free_gb) < lib.number(thresholds.min_disk_free_gb)
	shown := lib.pair(host.disk_free_gb, thresholds.min_disk_free_gb, 1)
	reason := {
		"rule": "min_disk_free_gb",
		"message": concat("", [
			"only ",
			shown[0],
			" GB of disk free for ",
			lib.text(object.get(host, "state_dir", null), "the state directory"),
			", needs ",
			shown[1],
			" GB",
		]),
		"observed": host.disk_free_gb,
		"threshold": thresholds.min_disk_free_gb,
	}
}

deny contains reason if {
	lib.number(host.load_per_core) > lib.number(thresholds.max_load_per_core)
	shown := lib.pair(host.load_per_core, thresholds.max_load_per_core, 2)
	reason := {
		"rule": "max_load_per_core",
		"message": concat("", [
			"load ",
			shown[0],
			" per core > ",
			shown[1],
			" (",
			lib.int(object.get(host, "cpu_count", null)),
			" CPUs)",
		]),
		"observed": host.load_per_core,
		"threshold": thresholds.max_load_per_core,
	}
}

deny contains reason if {
	lib.number(host.mem_available_pct) < lib.number(thresholds.min_mem_available_pct)
	shown := lib.percent_pair(host.mem_available_pct, thresholds.min_mem_available_pct)
	reason := {
		"rule": "min_mem_available_pct",
		"message": concat("", [
			"only ",
			shown[0],
			" of memory available, needs ",
			shown[1],
		]),
		"observed": host.mem_available_pct,
		"threshold": thresholds.min_mem_available_pct,
	}
}

# The input contract: a missing or mistyped field refuses the action, so a change
# in the CLI's input shape shows up at once instead of silently passing a check.
deny contains reason if {
	some reason in lib.typed_reasons(input, number_fields, "number")
}

deny contains reason if {
	some reason in lib.typed_reasons(input, [["host", "state_dir"]], "string")
}

deny contains reason if {
	some reason in lib.choice_reasons(input, ["action"], ["deploy", "canary"])
}

number_fields := [
	["thresholds", "min_disk_free_gb"],
	["thresholds", "max_load_per_core"],
	["thresholds", "min_mem_available_pct"],
	["host", "disk_free_gb"],
	["host", "load_per_core"],
	["host", "mem_available_pct"],
	["host", "cpu_count"],
]
