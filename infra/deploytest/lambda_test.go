package deploytest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/sinks/prefix"
)

// Serverless mode (infra/terraform/lambda.tf): the archive sink as a Lambda function on a
// Kinesis event source mapping. Its IAM is checked with the other roles' (iam_test.go); this
// file checks the rest: nothing is created without lambda_zip, the function runs the
// bootstrap of cmd/kinlog-lambda with the worker's configuration keys and values, the
// mapping has the settings the function's exactly-once protocol relies on, and the
// variables behind the mapping accept exactly the ranges AWS documents.

const lambdaFile = "lambda.tf"

// ---- Configuration keys, by a source scan ---------------------------------------------------

// goTypes is what configKeys needs of a package: its type declarations, the imports of the
// file each is in, and which types read themselves from text (conf.Duration, conf.ByteSize).
type goTypes struct {
	types   map[string]ast.Expr
	imports map[string]map[string]string // type name → local import name → path
	text    map[string]bool
}

func parseGoTypes(root, dir string) (*goTypes, error) {
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	g := &goTypes{types: map[string]ast.Expr{}, imports: map[string]map[string]string{}, text: map[string]bool{}}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		imports := map[string]string{}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			name := filepath.Base(p)
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = p
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if ts, ok := sp.(*ast.TypeSpec); ok {
						g.types[ts.Name.Name], g.imports[ts.Name.Name] = ts.Type, imports
					}
				}
			case *ast.FuncDecl:
				if d.Recv != nil && d.Name.Name == "UnmarshalText" && len(d.Recv.List) == 1 {
					recv := d.Recv.List[0].Type
					if st, ok := recv.(*ast.StarExpr); ok {
						recv = st.X
					}
					if id, ok := recv.(*ast.Ident); ok {
						g.text[id.Name] = true
					}
				}
			}
		}
	}
	return g, nil
}

// configKeys lists the dotted keys of a configuration struct type as internal/conf reads
// them (conf.Load: every exported field with a yaml name; structs other than text types
// are sections), following named types into the module's packages.
func configKeys(root, modPath, dir, typeName string) ([]string, error) {
	pkgs := map[string]*goTypes{}
	load := func(dir string) (*goTypes, error) {
		if g, ok := pkgs[dir]; ok {
			return g, nil
		}
		g, err := parseGoTypes(root, dir)
		pkgs[dir] = g
		return g, err
	}
	// section resolves a field type to a struct to descend into, or nil for a leaf.
	var section func(dir string, e ast.Expr, imports map[string]string) (string, *ast.StructType, map[string]string, error)
	section = func(dir string, e ast.Expr, imports map[string]string) (string, *ast.StructType, map[string]string, error) {
		switch x := e.(type) {
		case *ast.StructType:
			return dir, x, imports, nil
		case *ast.Ident:
			g, err := load(dir)
			if err != nil {
				return "", nil, nil, err
			}
			if t, ok := g.types[x.Name]; ok && !g.text[x.Name] {
				return section(dir, t, g.imports[x.Name])
			}
		case *ast.SelectorExpr:
			id, ok := x.X.(*ast.Ident)
			if !ok {
				break
			}
			if d, ok := strings.CutPrefix(imports[id.Name], modPath+"/"); ok {
				return section(d, &ast.Ident{Name: x.Sel.Name}, nil)
			}
		}
		return "", nil, nil, nil // a leaf: a basic type, a text type, a pointer, a list, another module's type
	}
	var keys []string
	var walk func(dir string, st *ast.StructType, imports map[string]string, prefix string) error
	walk = func(dir string, st *ast.StructType, imports map[string]string, prefix string) error {
		for _, f := range st.Fields.List {
			tag := ""
			if f.Tag != nil {
				raw, _ := strconv.Unquote(f.Tag.Value)
				tag, _, _ = strings.Cut(reflect.StructTag(raw).Get("yaml"), ",")
			}
			for _, n := range f.Names {
				if tag == "" || tag == "-" || !ast.IsExported(n.Name) {
					continue
				}
				d, sub, subImports, err := section(dir, f.Type, imports)
				if err != nil {
					return err
				}
				if sub == nil {
					keys = append(keys, prefix+tag)
					continue
				}
				if err := walk(d, sub, subImports, prefix+tag+"."); err != nil {
					return err
				}
			}
		}
		return nil
	}
	g, err := load(dir)
	if err != nil {
		return nil, err
	}
	st, ok := g.types[typeName].(*ast.StructType)
	if !ok {
		return nil, fmt.Errorf("%s declares no struct type %s", dir, typeName)
	}
	if err := walk(dir, st, g.imports[typeName], ""); err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return keys, nil
}

// envName is conf's variable for a key: sink.s3.bucket → KINLOG_SINK_S3_BUCKET.
func envName(key string) string {
	return "KINLOG_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configEnv maps the KINLOG_* variables of a configuration type to their keys.
func configEnv(root, dir, typeName string) (map[string]string, error) {
	modPath, err := modulePath(root)
	if err != nil {
		return nil, err
	}
	keys, err := configKeys(root, modPath, dir, typeName)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range keys {
		out[envName(k)] = k
	}
	return out, nil
}

// The worker's configuration (`kinlog consume`) and the function's.
const (
	workerConfigDir, workerConfigType = "cmd/kinlog", "consumeConfig"
	fnConfigDir, fnConfigType         = "internal/conf", "Function" // cmd/kinlog-lambda loads it
)

// lambdaOwnEnv are the function's variables that are not keys of the worker's
// configuration.
var lambdaOwnEnv = []string{"KINLOG_PROGRESS_TABLE"}

// lambdaEnvDiffers are the worker's keys the ConfigMap sets that the function gets
// otherwise, and why.
var lambdaEnvDiffers = map[string]string{
	"sink.s3.sse":            "set from s3_sse_algorithm, with the module's key named explicitly",
	"sink.s3.flush_interval": "the function has no flush timer: it archives each batch when invoked",
	"sink.s3.path_style":     "for MinIO and other S3-compatible stores; the function writes to AWS S3",
}

// ---- The checks -----------------------------------------------------------------------------

// lambdaEnv is what checkLambda needs to know about the configurations.
type lambdaEnv struct {
	worker    map[string]string // KINLOG_* → key, of the worker's configuration
	fn        map[string]string // KINLOG_* → key, of the function's
	configMap map[string]any    // the worker's kinlog.yaml (infra/k8s), decoded
}

func loadLambdaEnv(t testing.TB) lambdaEnv {
	t.Helper()
	root := repoRoot(t)
	var le lambdaEnv
	var err error
	if le.worker, err = configEnv(root, workerConfigDir, workerConfigType); err != nil {
		t.Fatalf("reading the worker's configuration keys: %v", err)
	}
	if le.fn, err = configEnv(root, fnConfigDir, fnConfigType); err != nil {
		t.Fatalf("reading the function's configuration keys: %v", err)
	}
	ms := loadManifests(t)
	if err := yaml.Unmarshal([]byte(ms.configMap.Data["kinlog.yaml"]), &le.configMap); err != nil {
		t.Fatalf("ConfigMap kinlog.yaml: %v", err)
	}
	return le
}

// configValue looks a dotted key up in a decoded YAML document and prints it as a KINLOG_*
// variable would hold it (lists comma-separated).
func configValue(doc map[string]any, key string) (string, bool) {
	var v any = doc
	for _, part := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	if list, ok := v.([]any); ok {
		var parts []string
		for _, e := range list {
			parts = append(parts, fmt.Sprint(e))
		}
		return strings.Join(parts, ","), true
	}
	if _, ok := v.(map[string]any); ok {
		return "", false
	}
	return fmt.Sprint(v), true
}

// exprOf returns an attribute's expression, nil when absent.
func (b evalBlock) exprOf(name string) hclsyntax.Expression {
	if a, ok := b.body.Attributes[name]; ok {
		return a.Expr
	}
	return nil
}

// isRef reports whether e is exactly the reference ref (e.g. var.lambda_batch_size).
func isRef(e hclsyntax.Expression, ref string) bool {
	tr, ok := e.(*hclsyntax.ScopeTraversalExpr)
	return ok && traversalString(tr.Traversal) == ref
}

func exprRefs(e hclsyntax.Expression) []string {
	var out []string
	for _, tr := range e.Variables() {
		out = append(out, traversalString(tr))
	}
	return out
}

// objectItems reads an object constructor's literal keys and their expressions.
func objectItems(e hclsyntax.Expression) (map[string]hclsyntax.Expression, error) {
	oc, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil, fmt.Errorf("%s is not an object constructor { KEY = value }", exprSource(e))
	}
	out := map[string]hclsyntax.Expression{}
	for _, it := range oc.Items {
		k, diags := it.KeyExpr.Value(nil)
		if diags.HasErrors() || k.Type() != cty.String {
			return nil, fmt.Errorf("%s: keys must be literal names", exprSource(it.KeyExpr))
		}
		out[k.AsString()] = it.ValueExpr
	}
	return out, nil
}

// allAttributes lists a body's attributes and those of its nested blocks.
func allAttributes(b *hclsyntax.Body) []*hclsyntax.Attribute {
	var out []*hclsyntax.Attribute
	for _, name := range sortedKeys(b.Attributes) {
		out = append(out, b.Attributes[name])
	}
	for _, nb := range b.Blocks {
		out = append(out, allAttributes(nb.Body)...)
	}
	return out
}

// lambdaBlocks are the top-level resource and data blocks of lambda.tf.
func lambdaBlocks(m *tfModule) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if (b.Type == "resource" || b.Type == "data") && b.Range().Filename == lambdaFile {
			out = append(out, b)
		}
	}
	return out
}

// esmVariables are the mapping's settings that come from variables, with the values AWS
// accepts (CreateEventSourceMapping, for Kinesis) and values just outside them.
var esmVariables = []struct {
	attr, variable string
	accept, reject []float64
}{
	{"batch_size", "lambda_batch_size", []float64{1, 100, 10000}, []float64{0, 10001, 1.5}},
	{"maximum_batching_window_in_seconds", "lambda_maximum_batching_window_in_seconds", []float64{0, 300}, []float64{-1, 301, 0.5}},
	{"maximum_retry_attempts", "lambda_maximum_retry_attempts", []float64{-1, 0, 10000}, []float64{-2, 10001, 2.5}},
	// -1 (no limit), or 60 to 604800: "values less than 60 and greater than -1 fall within
	// the parameter's absolute range, they are not allowed".
	{"maximum_record_age_in_seconds", "lambda_maximum_record_age_in_seconds", []float64{-1, 60, 604800}, []float64{-2, 0, 59, 604801, 60.5}},
	{"bisect_batch_on_function_error", "lambda_bisect_batch_on_function_error", nil, nil},
}

// functionVariables are the function's limits: memory 128-10240 MB, timeout up to 900 s.
var functionVariables = []struct {
	attr, variable string
	accept, reject []float64
}{
	{"memory_size", "lambda_memory_mb", []float64{128, 1024, 10240}, []float64{127, 10241, 1000.5}},
	{"timeout", "lambda_timeout_seconds", []float64{1, 900}, []float64{0, 901, 1.5}},
}

// validationPasses evaluates every validation of a variable with the variable set to val.
func validationPasses(m *tfModule, variable string, val cty.Value) (bool, error) {
	v, ok := m.vars[variable]
	if !ok {
		return false, fmt.Errorf("no variable %s", variable)
	}
	ctx, err := m.evalContext(map[string]cty.Value{variable: val})
	if err != nil {
		return false, err
	}
	vs, err := (evalBlock{v.block.Body, ctx}).blocks("validation")
	if err != nil {
		return false, err
	}
	for _, vb := range vs {
		ok, err := vb.attr("condition")
		if err != nil {
			return false, err
		}
		if !ok.IsKnown() || ok.Type() != cty.Bool {
			return false, fmt.Errorf("variable %s: condition is not a known bool", variable)
		}
		if ok.False() {
			return false, nil
		}
	}
	return true, nil
}

// checkLambdaRanges requires the variables behind the mapping and the function to accept
// exactly AWS's ranges.
func checkLambdaRanges(m *tfModule) problems {
	var ps problems
	for _, vs := range [][]struct {
		attr, variable string
		accept, reject []float64
	}{esmVariables, functionVariables} {
		for _, v := range vs {
			for _, n := range v.accept {
				if ok, err := validationPasses(m, v.variable, cty.NumberFloatVal(n)); err != nil || !ok {
					ps.addf("variable %s refuses %v, which AWS accepts for %s (%v)", v.variable, n, v.attr, err)
				}
			}
			for _, n := range v.reject {
				if ok, err := validationPasses(m, v.variable, cty.NumberFloatVal(n)); err != nil || ok {
					ps.addf("variable %s accepts %v, which AWS refuses for %s (%v)", v.variable, n, v.attr, err)
				}
			}
		}
	}
	return ps
}

// checkLambda returns everything wrong with serverless mode under one scenario.
func checkLambda(m *tfModule, sc tfScenario, le lambdaEnv) problems {
	var ps problems
	ctx, err := m.evalContext(sc.vars)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	vars := ctx.Variables["var"]
	zip := vars.GetAttr("lambda_zip")
	enabled := !zip.IsNull() && zip.AsString() != ""

	// Opt-in: every block of lambda.tf is counted, none exists without lambda_zip, and the
	// rest of the module refers to them only in outputs that fall back (try) without them.
	lbs := lambdaBlocks(m)
	if len(lbs) == 0 {
		ps.addf("%s declares no resources", lambdaFile)
	}
	counted := map[string]bool{} // "type.name", "data.type.name"
	for _, b := range lbs {
		if b.Type == "data" {
			counted["data."+b.Labels[0]+"."+b.Labels[1]] = true
		} else {
			counted[b.Labels[0]+"."+b.Labels[1]] = true
		}
		name := b.Type + " " + strings.Join(b.Labels, ".")
		if _, ok := b.Body.Attributes["count"]; !ok {
			ps.addf("%s %s has no count: serverless mode must be created only with lambda_zip", lambdaFile, name)
			continue
		}
		n, err := m.count(b, ctx)
		switch {
		case err != nil:
			ps.addf("%s: %v", name, err)
		case enabled && n != 1:
			ps.addf("%s: count %d with lambda_zip set, want 1", name, n)
		case !enabled && n != 0:
			ps.addf("%s: count %d without lambda_zip, want 0 (the worker-only deployment must not change)", name, n)
		}
	}
	for _, b := range m.blocks {
		if b.Range().Filename == lambdaFile {
			continue
		}
		for _, a := range allAttributes(b.Body) {
			for _, tr := range a.Expr.Variables() {
				ref := countIndex.ReplaceAllString(traversalString(tr), "")
				parts := strings.Split(ref, ".")
				if len(parts) < 2 {
					continue
				}
				k := parts[0] + "." + parts[1]
				if parts[0] == "data" && len(parts) > 2 {
					k = "data." + parts[1] + "." + parts[2]
				}
				if !counted[k] {
					continue
				}
				call, isCall := a.Expr.(*hclsyntax.FunctionCallExpr)
				if b.Type != "output" || !isCall || (call.Name != "try" && call.Name != "one") {
					ps.addf("%s %s refers to serverless mode's %s: only outputs may, through try(…, null)", b.Type, strings.Join(b.Labels, "."), k)
				}
			}
		}
	}
	if !enabled {
		return ps
	}

	get := func(typ, name string) evalBlock {
		r, err := m.resource(typ, name, ctx)
		if err != nil {
			ps = append(ps, err)
		}
		return r
	}
	wantRef := func(what string, e hclsyntax.Expression, ref string) {
		if e == nil || !isRef(e, ref) {
			ps.addf("%s must be %s", what, ref)
		}
	}

	// The function.
	fn := get("aws_lambda_function", "archiver")
	if fn.body != nil {
		if got := fn.str("runtime"); got != "provided.al2023" {
			ps.addf("aws_lambda_function.archiver: runtime %q, want provided.al2023 (a Go bootstrap; provided.al2 is deprecated)", got)
		}
		if got := fn.str("handler"); got != "bootstrap" {
			ps.addf("aws_lambda_function.archiver: handler %q, want bootstrap", got)
		}
		if a, err := fn.attr("architectures"); err != nil || !a.IsWhollyKnown() || a.LengthInt() != 1 || !a.Index(cty.NumberIntVal(0)).RawEquals(vars.GetAttr("lambda_architecture")) {
			ps.addf("aws_lambda_function.archiver: architectures must be [var.lambda_architecture] (%v)", err)
		}
		wantRef("aws_lambda_function.archiver filename", fn.exprOf("filename"), "var.lambda_zip")
		if h := fn.exprOf("source_code_hash"); h == nil || !slices.Contains(exprRefs(h), "var.lambda_zip") {
			ps.addf("aws_lambda_function.archiver: source_code_hash must hash var.lambda_zip, or a new zip is not deployed")
		}
		wantRef("aws_lambda_function.archiver role", fn.exprOf("role"), "aws_iam_role.lambda[0].arn")
		for _, v := range functionVariables {
			wantRef("aws_lambda_function.archiver "+v.attr, fn.exprOf(v.attr), "var."+v.variable)
		}
		if lc, err := fn.one("logging_config"); err != nil {
			ps.addf("aws_lambda_function.archiver: logging_config: %v", err)
		} else {
			wantRef("aws_lambda_function.archiver logging_config.log_group", lc.exprOf("log_group"), "aws_cloudwatch_log_group.lambda[0].name")
		}
		if env, err := fn.one("environment"); err != nil {
			ps.addf("aws_lambda_function.archiver: environment: %v", err)
		} else {
			ps = append(ps, checkLambdaEnv(m, ctx, env, le)...)
		}
		if lg := get("aws_cloudwatch_log_group", "lambda"); lg.body != nil {
			if want := "/aws/lambda/" + fn.str("function_name"); fn.str("function_name") == "" || lg.str("name") != want {
				ps.addf("aws_cloudwatch_log_group.lambda: name %q, want %q (the function's own group)", lg.str("name"), want)
			}
			wantRef("aws_cloudwatch_log_group.lambda retention_in_days", lg.exprOf("retention_in_days"), "var.lambda_log_retention_days")
		}
	}

	// The progress table: as the lease table, with the function's key.
	if d := get("aws_dynamodb_table", "lambda_progress"); d.body != nil {
		if d.str("billing_mode") != "PAY_PER_REQUEST" {
			ps.addf("aws_dynamodb_table.lambda_progress: billing_mode %q, want PAY_PER_REQUEST", d.str("billing_mode"))
		}
		if d.str("hash_key") != "shard" || d.str("range_key") != "" {
			ps.addf("aws_dynamodb_table.lambda_progress: want hash key shard and no range key")
		}
		attrs, err := d.blocks("attribute")
		if err != nil || len(attrs) != 1 || attrs[0].str("name") != "shard" || attrs[0].str("type") != "S" {
			ps.addf("aws_dynamodb_table.lambda_progress: want exactly one attribute, shard of type S")
		}
		if pitr, err := d.one("point_in_time_recovery"); err != nil || !pitr.boolean("enabled") {
			ps.addf("aws_dynamodb_table.lambda_progress: point_in_time_recovery must be enabled")
		}
		if leases, err := m.resource("aws_dynamodb_table", "leases", ctx); err == nil {
			a, _ := leases.blocks("server_side_encryption")
			b, _ := d.blocks("server_side_encryption")
			if len(a) != len(b) {
				ps.addf("aws_dynamodb_table.lambda_progress: encrypted otherwise than the lease table (%d vs %d server_side_encryption blocks)", len(b), len(a))
			}
		}
	}

	// The event source mapping.
	if e := get("aws_lambda_event_source_mapping", "archiver"); e.body != nil {
		wantRef("aws_lambda_event_source_mapping.archiver event_source_arn", e.exprOf("event_source_arn"), "aws_kinesis_stream.this.arn")
		wantRef("aws_lambda_event_source_mapping.archiver function_name", e.exprOf("function_name"), "aws_lambda_function.archiver[0].arn")
		if got := e.str("starting_position"); got != "TRIM_HORIZON" {
			ps.addf("aws_lambda_event_source_mapping.archiver: starting_position %q, want TRIM_HORIZON (a new mapping archives what the stream holds)", got)
		}
		if frt, err := e.attr("function_response_types"); err != nil || !frt.IsWhollyKnown() || frt.LengthInt() != 1 || frt.Index(cty.NumberIntVal(0)).AsString() != "ReportBatchItemFailures" {
			ps.addf("aws_lambda_event_source_mapping.archiver: function_response_types must be [\"ReportBatchItemFailures\"]: the function reports the first record it did not archive")
		}
		if pf := e.exprOf("parallelization_factor"); pf == nil || len(pf.Variables()) > 0 {
			ps.addf("aws_lambda_event_source_mapping.archiver: parallelization_factor must be the literal 1, not configurable: the exactly-once protocol needs one batch per shard at a time")
		} else if v, _ := pf.Value(nil); v.Type() != cty.Number || !v.RawEquals(cty.NumberIntVal(1)) {
			ps.addf("aws_lambda_event_source_mapping.archiver: parallelization_factor %#v, want 1", v)
		}
		for _, v := range esmVariables {
			wantRef("aws_lambda_event_source_mapping.archiver "+v.attr, e.exprOf(v.attr), "var."+v.variable)
		}
		for _, attr := range []string{"tumbling_window_in_seconds", "starting_position_timestamp", "enabled"} {
			if e.exprOf(attr) != nil {
				ps.addf("aws_lambda_event_source_mapping.archiver sets %s: tumbling windows are at-least-once, and the mapping starts enabled at the trim horizon", attr)
			}
		}
		if fc, _ := e.blocks("filter_criteria"); len(fc) > 0 {
			ps.addf("aws_lambda_event_source_mapping.archiver: filter_criteria would drop records from the archive")
		}
		if dc, err := e.one("destination_config"); err != nil {
			ps.addf("aws_lambda_event_source_mapping.archiver: destination_config: %v; discarded batches must go to the failed-batch bucket", err)
		} else if of, err := dc.one("on_failure"); err != nil {
			ps.addf("aws_lambda_event_source_mapping.archiver: destination_config.on_failure: %v", err)
		} else {
			wantRef("aws_lambda_event_source_mapping.archiver on_failure destination_arn", of.exprOf("destination_arn"), "aws_s3_bucket.lambda_failures[0].arn")
		}
		if dep := e.exprOf("depends_on"); dep == nil || !slices.Contains(exprRefs(dep), "aws_iam_role_policy_attachment.lambda") {
			ps.addf("aws_lambda_event_source_mapping.archiver must depend on aws_iam_role_policy_attachment.lambda: Lambda checks the role's stream permissions when the mapping is created")
		}
	}

	// The failed-batch bucket: private, TLS only, encrypted like the archive, expiring.
	if b := get("aws_s3_bucket_public_access_block", "lambda_failures"); b.body != nil {
		for _, a := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
			if !b.boolean(a) {
				ps.addf("aws_s3_bucket_public_access_block.lambda_failures: %s must be true", a)
			}
		}
		wantRef("aws_s3_bucket_public_access_block.lambda_failures bucket", b.exprOf("bucket"), "aws_s3_bucket.lambda_failures[0].id")
	}
	if o := get("aws_s3_bucket_ownership_controls", "lambda_failures"); o.body != nil {
		if r, err := o.one("rule"); err != nil || r.str("object_ownership") != "BucketOwnerEnforced" {
			ps.addf("aws_s3_bucket_ownership_controls.lambda_failures: want BucketOwnerEnforced (ACLs off)")
		}
	}
	if enc := get("aws_s3_bucket_server_side_encryption_configuration", "lambda_failures"); enc.body != nil {
		alg := vars.GetAttr("s3_sse_algorithm").AsString()
		if r, err := enc.one("rule"); err != nil {
			ps = append(ps, err)
		} else if def, err := r.one("apply_server_side_encryption_by_default"); err != nil {
			ps = append(ps, err)
		} else {
			if def.str("sse_algorithm") != alg {
				ps.addf("failed-batch bucket encryption %q, want the archive's %q", def.str("sse_algorithm"), alg)
			}
			key, err := def.attr("kms_master_key_id")
			if alg == "aws:kms" && (err != nil || key.IsNull() || !slices.Contains(def.refs("kms_master_key_id"), "local.kms_key_arn")) {
				ps.addf("failed-batch bucket: SSE-KMS must use local.kms_key_arn")
			}
			if alg != "aws:kms" && (err != nil || !key.IsNull()) {
				ps.addf("failed-batch bucket: SSE-S3 must not name a KMS key")
			}
		}
	}
	if lc := get("aws_s3_bucket_lifecycle_configuration", "lambda_failures"); lc.body != nil {
		rules, err := lc.blocks("rule")
		if err != nil {
			ps = append(ps, err)
		}
		var days []int64
		abort := false
		for _, r := range rules {
			if r.str("status") != "Enabled" {
				continue
			}
			exps, _ := r.blocks("expiration")
			for _, x := range exps {
				if d, err := x.attr("days"); err == nil && d.IsKnown() && d.Type() == cty.Number {
					n, _ := d.AsBigFloat().Int64()
					days = append(days, n)
				}
			}
			abs, _ := r.blocks("abort_incomplete_multipart_upload")
			abort = abort || len(abs) > 0
		}
		var want []int64
		if d, _ := vars.GetAttr("lambda_failures_expiration_days").AsBigFloat().Int64(); d > 0 {
			want = []int64{d}
		}
		if !slices.Equal(days, want) {
			ps.addf("failed-batch bucket expires objects after %v days, want %v (lambda_failures_expiration_days)", days, want)
		}
		if !abort {
			ps.addf("failed-batch bucket lifecycle does not abort incomplete multipart uploads")
		}
	}
	if bp := get("aws_s3_bucket_policy", "lambda_failures"); bp.body != nil {
		wantRef("aws_s3_bucket_policy.lambda_failures policy", bp.exprOf("policy"), "data.aws_iam_policy_document.lambda_failures_bucket[0].json")
	}

	// The role: assumed by Lambda only, with the checked policy attached.
	if r := get("aws_iam_role", "lambda"); r.body != nil {
		wantRef("aws_iam_role.lambda assume_role_policy", r.exprOf("assume_role_policy"), "data.aws_iam_policy_document.lambda_assume[0].json")
	}
	if doc := m.block("data", "aws_iam_policy_document", "lambda_assume"); doc != nil {
		sts, err := (evalBlock{doc.Body, ctx}).blocks("statement")
		if err != nil {
			ps = append(ps, err)
		}
		for _, st := range sts {
			prs, _ := st.blocks("principals")
			for _, p := range prs {
				ids, err := p.attr("identifiers")
				if p.str("type") != "Service" || err != nil || !ids.IsWhollyKnown() || ids.LengthInt() != 1 || ids.Index(cty.NumberIntVal(0)).AsString() != "lambda.amazonaws.com" {
					ps.addf("lambda_assume: the role must trust the lambda.amazonaws.com service only")
				}
			}
			if len(prs) != 1 {
				ps.addf("lambda_assume %s: want one principals block (lambda.amazonaws.com)", st.str("sid"))
			}
		}
		if len(sts) != 1 {
			ps.addf("lambda_assume: %d statements, want 1", len(sts))
		}
	}
	if a := get("aws_iam_role_policy_attachment", "lambda"); a.body != nil {
		wantRef("aws_iam_role_policy_attachment.lambda role", a.exprOf("role"), "aws_iam_role.lambda[0].name")
		wantRef("aws_iam_role_policy_attachment.lambda policy_arn", a.exprOf("policy_arn"), "aws_iam_policy.lambda[0].arn")
	}
	return ps
}

// checkLambdaEnv checks the function's environment: keys of its configuration and of the
// worker's, with the values of the worker's ConfigMap, the archive layout the Glue table
// reads, and the module's own resources.
func checkLambdaEnv(m *tfModule, ctx *hcl.EvalContext, env evalBlock, le lambdaEnv) problems {
	var ps problems
	vars := ctx.Variables["var"]
	items, err := objectItems(env.exprOf("variables"))
	if err != nil {
		ps.addf("aws_lambda_function.archiver environment.variables: %v", err)
		return ps
	}
	value := func(k string) (string, bool) {
		v, diags := items[k].Value(ctx)
		if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			return "", false
		}
		return v.AsString(), true
	}
	for _, k := range sortedKeys(items) {
		if _, ok := le.fn[k]; !ok {
			ps.addf("environment %s is not a key of the function's configuration (%s %s): the function would ignore it", k, fnConfigDir, fnConfigType)
		}
		if _, ok := le.worker[k]; !ok && !slices.Contains(lambdaOwnEnv, k) {
			ps.addf("environment %s is not a key of the worker's configuration (%s %s)", k, workerConfigDir, workerConfigType)
		}
	}
	for _, k := range append([]string{"KINLOG_SINK_S3_BUCKET", "KINLOG_SINK_S3_PREFIX", "KINLOG_SINK_S3_SSE", "KINLOG_SINK_S3_KMS_KEY_ID", "KINLOG_LOG_LEVEL"}, lambdaOwnEnv...) {
		if items[k] == nil {
			ps.addf("environment lacks %s", k)
		}
	}
	if len(ps) > 0 {
		return ps
	}

	// The module's resources and variables.
	if !isRef(items["KINLOG_SINK_S3_BUCKET"], "aws_s3_bucket.archive.bucket") {
		ps.addf("KINLOG_SINK_S3_BUCKET must be aws_s3_bucket.archive.bucket")
	}
	if !isRef(items["KINLOG_PROGRESS_TABLE"], "aws_dynamodb_table.lambda_progress[0].name") {
		ps.addf("KINLOG_PROGRESS_TABLE must be aws_dynamodb_table.lambda_progress[0].name")
	}
	if !isRef(items["KINLOG_LOG_LEVEL"], "var.lambda_log_level") {
		ps.addf("KINLOG_LOG_LEVEL must be var.lambda_log_level")
	}
	alg := vars.GetAttr("s3_sse_algorithm").AsString()
	if got, _ := value("KINLOG_SINK_S3_SSE"); got != alg {
		ps.addf("KINLOG_SINK_S3_SSE %q, want the archive's encryption %q", got, alg)
	}
	kms := items["KINLOG_SINK_S3_KMS_KEY_ID"]
	if got, known := value("KINLOG_SINK_S3_KMS_KEY_ID"); alg == "aws:kms" && (!slices.Contains(exprRefs(kms), "local.kms_key_arn") || known && got == "") {
		ps.addf("KINLOG_SINK_S3_KMS_KEY_ID must be local.kms_key_arn with SSE-KMS: without a key id S3 uses the account's aws/s3 key")
	} else if alg != "aws:kms" && (!known || got != "") {
		ps.addf("KINLOG_SINK_S3_KMS_KEY_ID %q with SSE-S3, want empty", got)
	}

	// The archive layout: the Glue table's partitions are the prefix's time expressions.
	pfx, ok := value("KINLOG_SINK_S3_PREFIX")
	archive := vars.GetAttr("archive_prefix").AsString()
	if want := archive + strings.TrimPrefix(prefix.DefaultArchive, "logs/"); !ok || pfx != want {
		ps.addf("KINLOG_SINK_S3_PREFIX %q, want %q: archive_prefix and the Hive partitions the Glue table reads", pfx, want)
	}
	if tbl, err := m.resource("aws_glue_catalog_table", "logs", ctx); err == nil {
		if params, err := tbl.attr("parameters"); err == nil && params.IsWhollyKnown() {
			bucket := fakeResources["aws_s3_bucket"]["archive"].GetAttr("bucket").AsString()
			tmpl := params.GetAttr("storage.location.template").AsString()
			if got := "s3://" + bucket + "/" + strings.NewReplacer("!{timestamp:yyyy-MM-dd}", "${dt}", "!{timestamp:HH}", "${hour}").Replace(pfx); got != tmpl {
				ps.addf("the function archives under %s, but the Glue table reads %s", got, tmpl)
			}
		}
	}

	// The worker's values: every sink and analytics key its ConfigMap sets (with the
	// default archive_prefix, the ConfigMap's layout).
	if archive == "logs/" {
		for _, env := range sortedKeys(le.worker) {
			key := le.worker[env]
			want, set := configValue(le.configMap, key)
			if !set || !(strings.HasPrefix(key, "sink.") || strings.HasPrefix(key, "analytics.")) {
				continue
			}
			if why, ok := lambdaEnvDiffers[key]; ok {
				if _, isSet := items[env]; isSet && key != "sink.s3.sse" {
					ps.addf("environment sets %s, which lambdaEnvDiffers says the function does not take: %s", env, why)
				}
				continue
			}
			if got, ok := value(env); !ok || got != want {
				ps.addf("environment %s = %q, but the worker's ConfigMap sets %s: %q; both modes must archive alike", env, got, key, want)
			}
		}
	}
	return ps
}

// ---- Tests ------------------------------------------------------------------------------------

func TestLambdaDeployment(t *testing.T) {
	m := loadModule(t)
	le := loadLambdaEnv(t)
	extra := []tfScenario{
		{"empty lambda_zip", map[string]cty.Value{"lambda_zip": cty.StringVal("")}},
		{"serverless mode, own archive prefix", map[string]cty.Value{"lambda_zip": cty.StringVal("fn.zip"), "archive_prefix": cty.StringVal("archive/v1/")}},
	}
	for _, sc := range append(slices.Clone(scenarios), extra...) {
		t.Run(sc.name, func(t *testing.T) {
			requireNone(t, "infra/terraform serverless mode", checkLambda(m, sc, le))
		})
	}
	requireNone(t, "infra/terraform serverless mode", checkLambdaRanges(m))
}

// TestConfigKeys pins what the source scan reads from the worker's and the function's
// configuration types, so an empty scan cannot make every key "unknown" or none.
func TestConfigKeys(t *testing.T) {
	le := loadLambdaEnv(t)
	for _, k := range []string{"KINLOG_STREAM", "KINLOG_CONSUMER_LEASE_TABLE", "KINLOG_SINK_S3_BUCKET", "KINLOG_SINK_S3_FLUSH_SIZE", "KINLOG_ANALYTICS_NUMERIC_FIELDS", "KINLOG_LOG_LEVEL", "KINLOG_HTTP_LISTEN"} {
		if _, ok := le.worker[k]; !ok {
			t.Errorf("worker configuration keys lack %s: %v", k, sortedKeys(le.worker))
		}
	}
	for _, k := range []string{"KINLOG_PROGRESS_TABLE", "KINLOG_SINK_S3_BUCKET", "KINLOG_ANALYTICS_PREFIX", "KINLOG_LOG_LEVEL"} {
		if _, ok := le.fn[k]; !ok {
			t.Errorf("function configuration keys lack %s: %v", k, sortedKeys(le.fn))
		}
	}
	for _, k := range lambdaOwnEnv {
		if _, ok := le.fn[k]; !ok {
			t.Errorf("lambdaOwnEnv lists %s, which the function does not read", k)
		}
		if _, ok := le.worker[k]; ok {
			t.Errorf("lambdaOwnEnv lists %s, which is a key of the worker's configuration too", k)
		}
	}
}

// TestLambdaChecksCatch breaks lambda.tf one way at a time and requires checkLambda (or the
// range check) to report it.
func TestLambdaChecksCatch(t *testing.T) {
	le := loadLambdaEnv(t)
	on := map[string]cty.Value{"lambda_zip": cty.StringVal("dist/kinlog-lambda-arm64.zip")}
	for _, tc := range []struct {
		name, file, old, new, want string
		vars                       map[string]cty.Value
	}{
		{name: "runtime", old: `runtime          = "provided.al2023"`, new: `runtime          = "provided.al2"`, want: "runtime \"provided.al2\""},
		{name: "handler", old: `handler          = "bootstrap"`, new: `handler          = "main"`, want: "handler \"main\""},
		{name: "fixed architecture", old: "architectures    = [var.lambda_architecture]", new: `architectures    = ["arm64"]`, want: "architectures must be", vars: map[string]cty.Value{"lambda_zip": cty.StringVal("fn.zip"), "lambda_architecture": cty.StringVal("x86_64")}},
		{name: "no source hash", old: "source_code_hash = filebase64sha256(var.lambda_zip)\n", new: "", want: "source_code_hash"},
		{name: "parallelization variable", old: "parallelization_factor = 1", new: "parallelization_factor = var.lambda_batch_size", want: "parallelization_factor must be the literal 1"},
		{name: "parallelization 2", old: "parallelization_factor = 1", new: "parallelization_factor = 2", want: "parallelization_factor cty.NumberIntVal(2)"},
		{name: "no partial batch response", old: `function_response_types = ["ReportBatchItemFailures"]`, new: "function_response_types = []", want: "ReportBatchItemFailures"},
		{name: "latest", old: `starting_position = "TRIM_HORIZON"`, new: `starting_position = "LATEST"`, want: "TRIM_HORIZON"},
		{name: "fixed batch size", old: "batch_size                         = var.lambda_batch_size", new: "batch_size = 100", want: "batch_size must be var.lambda_batch_size"},
		{name: "fixed retries", old: "maximum_retry_attempts         = var.lambda_maximum_retry_attempts", new: "maximum_retry_attempts = 3", want: "maximum_retry_attempts must be var.lambda_maximum_retry_attempts"},
		{name: "tumbling window", old: "bisect_batch_on_function_error = var.lambda_bisect_batch_on_function_error", new: "bisect_batch_on_function_error = var.lambda_bisect_batch_on_function_error\n  tumbling_window_in_seconds = 60", want: "tumbling_window_in_seconds"},
		{name: "no on-failure destination", old: "  destination_config {\n    on_failure {\n      destination_arn = aws_s3_bucket.lambda_failures[0].arn\n    }\n  }\n", new: "", want: "destination_config"},
		{name: "no policy dependency", old: "  # Lambda checks the role's stream permissions when the mapping is created.\n  depends_on = [aws_iam_role_policy_attachment.lambda]\n", new: "", want: "must depend on aws_iam_role_policy_attachment.lambda"},
		{name: "uncounted", old: "resource \"aws_cloudwatch_log_group\" \"lambda\" {\n  count = local.lambda_enabled ? 1 : 0\n", new: "resource \"aws_cloudwatch_log_group\" \"lambda\" {\n", want: "aws_cloudwatch_log_group.lambda has no count", vars: map[string]cty.Value{}},
		{name: "always on", old: "resource \"aws_dynamodb_table\" \"lambda_progress\" {\n  count = local.lambda_enabled ? 1 : 0", new: "resource \"aws_dynamodb_table\" \"lambda_progress\" {\n  count = 1", want: "count 1 without lambda_zip", vars: map[string]cty.Value{"lambda_zip": cty.StringVal("")}},
		{name: "output without try", file: "outputs.tf", old: "value       = try(aws_lambda_function.archiver[0].function_name, null)", new: "value       = aws_lambda_function.archiver[0].function_name", want: "refers to serverless mode's aws_lambda_function.archiver"},
		{name: "worker depends on lambda", file: "main.tf", old: "  tags = var.tags\n}\n\n# ---- DynamoDB lease table", new: "  tags = merge(var.tags, { fn = aws_lambda_function.archiver[0].arn })\n}\n\n# ---- DynamoDB lease table", want: "resource aws_kinesis_stream.this refers to serverless mode's aws_lambda_function.archiver"},
		{name: "range key", old: "  hash_key                    = \"shard\"\n", new: "  hash_key                    = \"shard\"\n  range_key                   = \"seq\"\n", want: "hash key shard"},
		{name: "no PITR", old: "  point_in_time_recovery {\n    enabled = true\n  }\n\n  tags = var.tags\n}\n\n# ---- Bucket for failed batches", new: "  tags = var.tags\n}\n\n# ---- Bucket for failed batches", want: "point_in_time_recovery"},
		{name: "public failures", old: "  ignore_public_acls      = true\n", new: "  ignore_public_acls      = false\n", want: "ignore_public_acls must be true"},
		{name: "failures unencrypted", old: "      sse_algorithm     = var.s3_sse_algorithm\n      kms_master_key_id = local.s3_uses_kms ? local.kms_key_arn : null\n    }\n    bucket_key_enabled = local.s3_uses_kms\n  }\n}\n\nresource \"aws_s3_bucket_lifecycle_configuration\" \"lambda_failures\"", new: "      sse_algorithm     = \"AES256\"\n      kms_master_key_id = null\n    }\n  }\n}\n\nresource \"aws_s3_bucket_lifecycle_configuration\" \"lambda_failures\"", want: "failed-batch bucket encryption \"AES256\""},
		{name: "failures never expire", old: "for_each = var.lambda_failures_expiration_days > 0 ? [var.lambda_failures_expiration_days] : []", new: "for_each = []", want: "failed-batch bucket expires objects after [] days, want [90]"},
		{name: "log group of another name", old: "name              = \"/aws/lambda/${local.lambda_function_name}\"", new: "name              = \"kinlog\"", want: "the function's own group"},
		{name: "env key unknown to the function", old: "KINLOG_LOG_LEVEL                = var.lambda_log_level", new: "KINLOG_LOG_LEVEL                = var.lambda_log_level\n      KINLOG_LOG_LEVL = \"debug\"", want: "KINLOG_LOG_LEVL is not a key of the function's configuration"},
		{name: "env key of the function only", old: "KINLOG_LOG_LEVEL                = var.lambda_log_level", new: "KINLOG_LOG_LEVEL                = var.lambda_log_level\n      KINLOG_PROGRESS_TABLE_X = \"t\"", want: "KINLOG_PROGRESS_TABLE_X is not a key of the worker's configuration"},
		{name: "other encoding", old: `KINLOG_SINK_S3_ENCODING    = "ndjson"`, new: `KINLOG_SINK_S3_ENCODING    = "parquet"`, want: "KINLOG_SINK_S3_ENCODING = \"parquet\", but the worker's ConfigMap sets sink.s3.encoding: \"ndjson\""},
		{name: "rollups differ", old: `KINLOG_ANALYTICS_NUMERIC_FIELDS = "latency_ms"`, new: `KINLOG_ANALYTICS_NUMERIC_FIELDS = ""`, want: "analytics.numeric_fields"},
		{name: "prefix ignores archive_prefix", old: "KINLOG_SINK_S3_PREFIX       = \"${var.archive_prefix}dt=", new: "KINLOG_SINK_S3_PREFIX       = \"logs/dt=", want: "KINLOG_SINK_S3_PREFIX \"logs/dt=", vars: map[string]cty.Value{"lambda_zip": cty.StringVal("fn.zip"), "archive_prefix": cty.StringVal("archive/")}},
		{name: "aws/s3 key", old: `KINLOG_SINK_S3_KMS_KEY_ID       = local.s3_uses_kms ? local.kms_key_arn : ""`, new: `KINLOG_SINK_S3_KMS_KEY_ID       = ""`, want: "KINLOG_SINK_S3_KMS_KEY_ID must be local.kms_key_arn"},
		{name: "progress table by name", old: "KINLOG_PROGRESS_TABLE           = aws_dynamodb_table.lambda_progress[0].name", new: "KINLOG_PROGRESS_TABLE           = \"kinlog-lambda-progress\"", want: "KINLOG_PROGRESS_TABLE must be"},
		{name: "trusts another service", old: `identifiers = ["lambda.amazonaws.com"]`, new: `identifiers = ["lambda.amazonaws.com", "ec2.amazonaws.com"]`, want: "lambda.amazonaws.com service only"},
		{name: "record age 0..59", file: "variables.tf", old: "var.lambda_maximum_record_age_in_seconds == -1 || (var.lambda_maximum_record_age_in_seconds >= 60", new: "var.lambda_maximum_record_age_in_seconds == -1 || (var.lambda_maximum_record_age_in_seconds >= 0", want: "variable lambda_maximum_record_age_in_seconds accepts 0"},
		{name: "batch size 20000", file: "variables.tf", old: "var.lambda_batch_size <= 10000", new: "var.lambda_batch_size <= 20000", want: "variable lambda_batch_size accepts 10001"},
		{name: "window too tight", file: "variables.tf", old: "var.lambda_maximum_batching_window_in_seconds <= 300", new: "var.lambda_maximum_batching_window_in_seconds <= 60", want: "variable lambda_maximum_batching_window_in_seconds refuses 300"},
		{name: "retries without -1", file: "variables.tf", old: "var.lambda_maximum_retry_attempts >= -1", new: "var.lambda_maximum_retry_attempts >= 0", want: "variable lambda_maximum_retry_attempts refuses -1"},
		{name: "fractional memory", file: "variables.tf", old: "var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb", new: "var.lambda_memory_mb <= 10240", want: "variable lambda_memory_mb accepts 1000.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = lambdaFile
			}
			srcs := readModule(t)
			if !strings.Contains(srcs[file], tc.old) {
				t.Fatalf("%s no longer contains %q; update the test", file, tc.old)
			}
			srcs[file] = strings.Replace(srcs[file], tc.old, tc.new, 1)
			m, err := parseModule(srcs)
			if err != nil {
				t.Fatalf("parsing the edited module: %v", err)
			}
			vars := tc.vars
			if vars == nil {
				vars = on
			}
			ps := checkLambda(m, tfScenario{tc.name, vars}, le)
			if file == "variables.tf" {
				ps = append(ps, checkLambdaRanges(m)...)
			}
			requireProblem(t, ps, tc.want)
		})
	}
}
