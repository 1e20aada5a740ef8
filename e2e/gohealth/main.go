// Command gohealth says what GitOps tools would say about live Kubernetes objects: the
// status kstatus computes (sigs.k8s.io/cli-utils/pkg/kstatus, the library Flux uses), and
// the health an Argo CD health check in Lua returns when run the way Argo CD runs it
// (github.com/yuin/gopher-lua, the interpreter Argo CD embeds).
//
// Usage:
//
//	kubectl get ballsessions -o json | gohealth --argocd-cm argocd-cm.yaml
//
// The input is one object or a List (`kubectl get -o json`). The Lua script for an object
// of group G and kind K is the argocd-cm key `resource.customizations.health.G_K`, as Argo
// CD looks it up. The output is a JSON array, one entry per object, in input order:
//
//	[{"namespace": "...", "name": "...",
//	  "kstatus": {"status": "Current", "message": "..."},
//	  "argocd": {"status": "Healthy", "message": "..."}}]
//
// How the script runs, as in Argo CD's health check: only the package, base and table
// libraries are opened (SkipOpenLibs); the object is the global `obj` (JSON numbers as Lua
// numbers, arrays as sequences, null as nil); the script has one second; its return value
// must be a table, which is JSON-encoded (layeh.com/gopher-json) and read as
// {status, message}; a status other than Healthy, Progressing, Degraded, Suspended,
// Missing or Unknown becomes Unknown. Argo CD also opens a restricted `os` library, which
// this helper leaves out (a script calling os fails here instead).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const (
	healthKeyPrefix = "resource.customizations.health."
	scriptTimeout   = time.Second
	invalidStatus   = "Lua returned an invalid health status"
)

var validHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// Verdict is what one tool says about one object.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Report is what both tools say about one object.
type Report struct {
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Kstatus   Verdict `json:"kstatus"`
	ArgoCD    Verdict `json:"argocd"`
}

// healthScripts reads the health scripts of an argocd-cm ConfigMap (YAML or JSON).
func healthScripts(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%s: not a ConfigMap", path)
	}
	return cm.Data, nil
}

// objects reads one object or a List, numbers decoded as Kubernetes decodes them
// (int64 where integral, else float64).
func objects(input io.Reader) ([]*unstructured.Unstructured, error) {
	raw, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	var document map[string]interface{}
	if err := utiljson.Unmarshal(raw, &document); err != nil {
		return nil, fmt.Errorf("input is not a JSON object: %w", err)
	}
	items, isList := document["items"].([]interface{})
	if !isList {
		return []*unstructured.Unstructured{{Object: document}}, nil
	}
	found := make([]*unstructured.Unstructured, 0, len(items))
	for index, item := range items {
		object, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("items[%d] is not an object", index)
		}
		found = append(found, &unstructured.Unstructured{Object: object})
	}
	return found, nil
}

// toLua turns a decoded JSON value into the Lua value a health script sees.
func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []interface{}:
		sequence := state.CreateTable(len(v), 0)
		for _, item := range v {
			sequence.Append(toLua(state, item))
		}
		return sequence
	case map[string]interface{}:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	}
	return lua.LNil
}

// argoHealth runs a health script against one object.
func argoHealth(object map[string]interface{}, script string) (Verdict, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	libraries := []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	}
	for _, library := range libraries {
		call := lua.P{Fn: state.NewFunction(library.open), NRet: 0, Protect: true}
		if err := state.CallByParam(call, lua.LString(library.name)); err != nil {
			return Verdict{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(script); err != nil {
		return Verdict{}, err
	}
	returned := state.Get(-1)
	if returned.Type() != lua.LTTable {
		return Verdict{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return Verdict{}, err
	}
	var verdict Verdict
	if err := json.Unmarshal(encoded, &verdict); err != nil {
		return Verdict{}, err
	}
	if !validHealth[verdict.Status] {
		return Verdict{Status: "Unknown", Message: invalidStatus}, nil
	}
	return verdict, nil
}

func report(object *unstructured.Unstructured, scripts map[string]string) (Report, error) {
	where := object.GetNamespace() + "/" + object.GetName()
	computed, err := status.Compute(object)
	if err != nil {
		return Report{}, fmt.Errorf("%s: kstatus: %w", where, err)
	}
	gvk := object.GroupVersionKind()
	key := healthKeyPrefix + gvk.Group + "_" + gvk.Kind
	script, ok := scripts[key]
	if !ok {
		return Report{}, fmt.Errorf("%s: the ConfigMap has no key %s", where, key)
	}
	health, err := argoHealth(object.Object, script)
	if err != nil {
		return Report{}, fmt.Errorf("%s: health script: %w", where, err)
	}
	return Report{
		Namespace: object.GetNamespace(),
		Name:      object.GetName(),
		Kstatus:   Verdict{Status: computed.Status.String(), Message: computed.Message},
		ArgoCD:    health,
	}, nil
}

func run() error {
	configMap := flag.String("argocd-cm", "", "argocd-cm ConfigMap (YAML or JSON) holding the health scripts")
	flag.Parse()
	if *configMap == "" {
		return errors.New("--argocd-cm is required")
	}
	scripts, err := healthScripts(*configMap)
	if err != nil {
		return err
	}
	found, err := objects(os.Stdin)
	if err != nil {
		return err
	}
	reports := make([]Report, 0, len(found))
	for _, object := range found {
		one, err := report(object, scripts)
		if err != nil {
			return err
		}
		reports = append(reports, one)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(reports)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "gohealth: error: %v\n", err)
		os.Exit(1)
	}
}
