// Runs Argo CD resource health checks (health.lua + health_test.yaml) with
// gopher-lua, the Lua engine Argo CD embeds, for the packaging tests.
module portcullis.dev/e2e/tools/luahealth

go 1.26.0

require (
	github.com/yuin/gopher-lua v1.1.2
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
