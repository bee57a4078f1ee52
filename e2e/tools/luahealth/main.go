// luahealth evaluates Argo CD resource health checks the way Argo CD does,
// and fails on any case whose result differs from what its test file expects.
//
//	luahealth DIR...
//	luahealth -eval health.lua OBJECT.yaml...
//
// The first form checks test cases: each DIR holds health.lua and health_test.yaml (Argo CD's
// resource_customizations layout):
//
//	tests:
//	- inputPath: testdata/healthy.yaml
//	  healthStatus: {status: Healthy, message: "..."}
//
// As for a check installed through argocd-cm (without useOpenLibs), the script
// runs without Lua's standard libraries except base, table and package, with
// the object as the global `obj`, and must return a table with `status` and
// `message` (or nil). Prints one line per case; exits 1 on any mismatch.
//
// The second form prints the health of each object (a live one, say) as
// "status<TAB>message", one line per object; exits 1 if the script fails.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type testFile struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// The statuses Argo CD accepts; anything else it shows as Unknown.
var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] == "-eval" && len(os.Args) < 4) {
		fmt.Fprintln(os.Stderr, "usage: luahealth DIR... | luahealth -eval health.lua OBJECT.yaml...")
		os.Exit(2)
	}
	if os.Args[1] == "-eval" {
		script, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, path := range os.Args[3:] {
			got, err := evaluate(string(script), path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
				os.Exit(1)
			}
			fmt.Printf("%s\t%s\n", got.Status, got.Message)
		}
		return
	}
	failed, cases := 0, 0
	for _, dir := range os.Args[1:] {
		n, err := checkDir(dir)
		cases += n
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed++
		}
	}
	if cases == 0 {
		fmt.Fprintln(os.Stderr, "no health_test.yaml case found")
		os.Exit(1)
	}
	fmt.Printf("%d cases, %d directories failed\n", cases, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// checkDir runs every case of DIR/health_test.yaml; the error names each mismatch.
func checkDir(dir string) (int, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return 0, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return 0, err
	}
	var tests testFile
	if err := yaml.UnmarshalStrict(raw, &tests); err != nil {
		return 0, fmt.Errorf("%s/health_test.yaml: %w", dir, err)
	}
	if len(tests.Tests) == 0 {
		return 0, fmt.Errorf("%s/health_test.yaml: no tests", dir)
	}
	var mismatches []string
	for _, test := range tests.Tests {
		input := filepath.Join(dir, test.InputPath)
		got, err := evaluate(string(script), input)
		switch {
		case err != nil:
			mismatches = append(mismatches, fmt.Sprintf("%s: %v", input, err))
			fmt.Printf("FAIL %s: %v\n", input, err)
		case got != test.HealthStatus:
			mismatches = append(mismatches, fmt.Sprintf("%s: got %+v, want %+v", input, got, test.HealthStatus))
			fmt.Printf("FAIL %s: got %+v, want %+v\n", input, got, test.HealthStatus)
		default:
			fmt.Printf("ok   %s: %s %q\n", input, got.Status, got.Message)
		}
	}
	if len(mismatches) > 0 {
		return len(tests.Tests), fmt.Errorf("%s: %d of %d cases failed", dir, len(mismatches), len(tests.Tests))
	}
	return len(tests.Tests), nil
}

// evaluate runs the script on the object in path, as Argo CD's ExecuteHealthLua does.
func evaluate(script, path string) (healthStatus, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return healthStatus{}, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return healthStatus{}, fmt.Errorf("parse: %w", err)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, fmt.Errorf("script error: %w", err)
	}
	result := l.Get(-1)
	switch result.Type() {
	case lua.LTNil:
		return healthStatus{}, nil
	case lua.LTTable:
	default:
		return healthStatus{}, fmt.Errorf("script returned a %s, not a table", result.Type())
	}
	table := result.(*lua.LTable)
	var got healthStatus
	for key, field := range map[string]*string{"status": &got.Status, "message": &got.Message} {
		switch v := table.RawGetString(key).(type) {
		case lua.LString:
			*field = string(v)
		case *lua.LNilType:
		default:
			return healthStatus{}, fmt.Errorf("%s is a %s, not a string", key, v.Type())
		}
	}
	if !validStatus[got.Status] {
		return healthStatus{}, fmt.Errorf("invalid health status %q (Argo CD shows it as Unknown)", got.Status)
	}
	return got, nil
}

// toLua converts decoded YAML into Lua values as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
