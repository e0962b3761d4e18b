// The wall-clock rule: skewproxy exists because the host clock may be wrong,
// so production code outside package timesource must never take the time of
// day from the host. It reads the corrected clock (timesource) instead.
// TestNoHostWallClockOutsideTimesource parses every non-test .go file of the
// module (except timesource itself, timesource/ntptest, proxy/proxytest,
// cmd/skewbench, testdata and vendor directories) and reports, as
// file:line: message,
//
//   - every reference to the time package's Now, called (time.Now()) or taken
//     as a value (time.Now), whatever name "time" is imported under; a
//     dot-import of "time" is a violation by itself, as it would hide Now;
//   - every composite literal of crypto/tls's Config that does not set Time,
//     and of crypto/x509's VerifyOptions that does not set CurrentTime:
//     certificate validity would then be judged by the host clock.
//
// time.Since, time.Until, time.Unix, time.Date and the timers are not
// flagged. time.Now() or time.Now().Add(d) written directly as the argument
// of a SetDeadline, SetReadDeadline or SetWriteDeadline call is not flagged
// either: socket deadlines run on the monotonic reading.
//
// Any other exception is marked by a comment with a reason after the marker.
// A time.Now whose reading only yields durations (latency, timeouts) takes
// "monotonic:":
//
//	start := time.Now() // monotonic: duration for the access log
//
// A tls.Config or x509.VerifyOptions that never judges a certificate's
// validity (a server-only config that verifies no peer) takes "wallclock:":
//
//	// wallclock: server side only, no client certificates are verified
//	base := &tls.Config{MinVersion: tls.VersionTLS12}
//
// A marker counts when it is a comment on the line of the flagged code or of
// the first line of its statement, or a comment standing alone on the line
// just above either. A trailing comment on the line above belongs to that
// line's code and does not count. A marker with an empty reason does not
// count.
//
// Known limits (syntax only, no type checking): tls.Config values made by
// new(tls.Config), a zero var or Clone are not seen, nor are the elided
// element types of slice literals; and names are resolved by go/parser's
// object resolution, which tells a local variable named time from the
// package but nothing subtler.

package timesource_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// wallclockSkipTrees are module-relative directories whose whole trees are
// exempt: test support and the benchmark client.
var wallclockSkipTrees = []string{
	"timesource/ntptest", // test support: a local NTP server
	"proxy/proxytest",    // test support: the fake AWS world has its own clock
	"cmd/skewbench",      // benchmark harness: a client measuring latency
}

// wallclockOwner is the package allowed to read the host clock. Only its own
// directory is exempt; other subpackages are checked unless listed above.
const wallclockOwner = "timesource"

func TestNoHostWallClockOutsideTimesource(t *testing.T) {
	root := wallclockModuleRoot(t)
	fset := token.NewFileSet()
	parsed := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if wallclockSkipDir(rel) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || path.Dir(rel) == wallclockOwner {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, rel, src, parser.ParseComments)
		if err != nil {
			t.Errorf("%v", err)
			return nil
		}
		parsed++
		for _, v := range wallclockViolations(fset, f, src) {
			t.Error(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if parsed == 0 {
		t.Fatalf("no Go files found under %s", root)
	}
}

// wallclockModuleRoot walks up from the working directory to go.mod.
func wallclockModuleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// wallclockSkipDir reports whether the module-relative directory rel is left
// out of the check.
func wallclockSkipDir(rel string) bool {
	switch base := path.Base(rel); {
	case base == "testdata" || base == "vendor":
		return true
	case strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_"):
		return true // ignored by the go tool
	}
	for _, s := range wallclockSkipTrees {
		if rel == s {
			return true
		}
	}
	return false
}

// Marker words, each followed by a reason in a comment.
const (
	markMonotonic = "monotonic:"
	markWallclock = "wallclock:"
)

// deadlineSetters are the methods whose argument may be time.Now() or
// time.Now().Add(d) without a marker.
var deadlineSetters = map[string]bool{
	"SetDeadline":      true,
	"SetReadDeadline":  true,
	"SetWriteDeadline": true,
}

// wallclockViolations returns "file:line: message" for each host wall clock
// read in file, in source order. file must have been parsed with
// parser.ParseComments from src (src tells a comment standing alone on its
// line from one trailing code).
func wallclockViolations(fset *token.FileSet, file *ast.File, src []byte) []string {
	c := &wallclockChecker{fset: fset, src: src, names: map[string]string{}}
	for _, imp := range file.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil || (p != "time" && p != "crypto/tls" && p != "crypto/x509") {
			continue
		}
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		switch name {
		case "_":
			continue
		case ".":
			c.report(imp.Pos(), fmt.Sprintf("dot-import of %q hides its names from the wall-clock check: import it by name", p))
			continue
		}
		c.names[p] = name
	}
	if len(c.names) == 0 {
		return c.out
	}
	c.collectMarkers(file)
	c.collectDeadlineArgs(file)

	var stack []ast.Node
	ast.Inspect(file, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		switch n := n.(type) {
		case *ast.SelectorExpr:
			c.checkNow(n, stack)
		case *ast.CompositeLit:
			c.checkLiteral(n, stack)
		}
		stack = append(stack, n)
		return true
	})
	return c.out
}

type wallclockChecker struct {
	fset  *token.FileSet
	src   []byte
	names map[string]string // import path → local name in this file
	// markers by line: every marker comment on that line.
	markers map[int][]marker
	// deadlineNow are the time.Now selectors allowed as deadline arguments.
	deadlineNow map[*ast.SelectorExpr]bool
	out         []string
}

type marker struct {
	word    string // markMonotonic or markWallclock
	reason  string
	ownLine bool // nothing but blanks precede the comment on its line
}

func (c *wallclockChecker) report(pos token.Pos, msg string) {
	p := c.fset.Position(pos)
	c.out = append(c.out, fmt.Sprintf("%s:%d: %s", p.Filename, p.Line, msg))
}

func (c *wallclockChecker) line(pos token.Pos) int { return c.fset.Position(pos).Line }

// isPkgSel reports whether e is pkg.name, where pkg is the local name of
// import path importPath and not a local variable shadowing it.
func (c *wallclockChecker) isPkgSel(e ast.Expr, importPath, name string) bool {
	sel, ok := ast.Unparen(e).(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	local, imported := c.names[importPath]
	// go/parser leaves package names unresolved (Obj == nil) and resolves
	// local declarations, so a variable named time has an Obj.
	return ok && imported && id.Name == local && id.Obj == nil
}

// nowCall returns the time.Now selector if e is the call time.Now().
func (c *wallclockChecker) nowCall(e ast.Expr) *ast.SelectorExpr {
	call, ok := ast.Unparen(e).(*ast.CallExpr)
	if !ok || len(call.Args) != 0 || !c.isPkgSel(call.Fun, "time", "Now") {
		return nil
	}
	return ast.Unparen(call.Fun).(*ast.SelectorExpr)
}

func (c *wallclockChecker) collectMarkers(file *ast.File) {
	c.markers = map[int][]marker{}
	for _, g := range file.Comments {
		for _, cm := range g.List {
			text := strings.TrimPrefix(cm.Text, "//")
			if strings.HasPrefix(cm.Text, "/*") {
				text = strings.TrimSuffix(strings.TrimPrefix(cm.Text, "/*"), "*/")
			}
			for _, word := range []string{markMonotonic, markWallclock} {
				i := strings.Index(text, word)
				if i < 0 {
					continue
				}
				m := marker{
					word:    word,
					reason:  strings.TrimSpace(text[i+len(word):]),
					ownLine: c.aloneOnLine(cm.Pos()),
				}
				// A block comment may span lines: it marks each.
				for l := c.line(cm.Pos()); l <= c.line(cm.End()); l++ {
					c.markers[l] = append(c.markers[l], m)
				}
			}
		}
	}
}

// aloneOnLine reports whether only blanks precede pos on its line.
func (c *wallclockChecker) aloneOnLine(pos token.Pos) bool {
	tf := c.fset.File(pos)
	if tf == nil || c.src == nil {
		return false
	}
	start := tf.Offset(tf.LineStart(tf.Line(pos)))
	end := tf.Offset(pos)
	if start < 0 || end > len(c.src) || start > end {
		return false
	}
	return strings.TrimSpace(string(c.src[start:end])) == ""
}

func (c *wallclockChecker) collectDeadlineArgs(file *ast.File) {
	c.deadlineNow = map[*ast.SelectorExpr]bool{}
	ast.Inspect(file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		fun, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
		if !ok || !deadlineSetters[fun.Sel.Name] {
			return true
		}
		for _, arg := range call.Args {
			if sel := c.nowCall(arg); sel != nil {
				c.deadlineNow[sel] = true // x.SetDeadline(time.Now())
				continue
			}
			add, ok := ast.Unparen(arg).(*ast.CallExpr)
			if !ok || len(add.Args) != 1 {
				continue
			}
			if m, ok := ast.Unparen(add.Fun).(*ast.SelectorExpr); ok && m.Sel.Name == "Add" {
				if sel := c.nowCall(m.X); sel != nil {
					c.deadlineNow[sel] = true // x.SetDeadline(time.Now().Add(d))
				}
			}
		}
		return true
	})
}

// marked looks for a word marker covering node n, whose ancestors are stack.
// It returns found if some marker applies, and ok if one has a reason.
func (c *wallclockChecker) marked(word string, n ast.Node, stack []ast.Node) (found, ok bool) {
	lines := []int{c.line(n.Pos())}
	for i := len(stack) - 1; i >= 0; i-- {
		switch s := stack[i].(type) {
		case ast.Stmt, *ast.ValueSpec:
			lines = append(lines, c.line(s.Pos()))
		default:
			continue
		}
		break
	}
	for _, l := range lines {
		for _, m := range c.markers[l] {
			if m.word == word {
				found = true
				ok = ok || m.reason != ""
			}
		}
		for _, m := range c.markers[l-1] {
			if m.word == word && m.ownLine {
				found = true
				ok = ok || m.reason != ""
			}
		}
	}
	return found, ok
}

func (c *wallclockChecker) checkNow(sel *ast.SelectorExpr, stack []ast.Node) {
	if !c.isPkgSel(sel, "time", "Now") || c.deadlineNow[sel] {
		return
	}
	local := c.names["time"]
	what := local + ".Now"
	// The nearest ancestor that is not a parenthesis tells a call from a
	// value.
	i := len(stack) - 1
	for i >= 0 {
		if _, ok := stack[i].(*ast.ParenExpr); !ok {
			break
		}
		i--
	}
	if call, ok := stack[max(i, 0)].(*ast.CallExpr); ok && i >= 0 && ast.Unparen(call.Fun) == ast.Node(sel) {
		what += "()"
	} else {
		what += " as a value"
	}
	if local != "time" {
		what += ` (package "time")`
	}
	switch found, ok := c.marked(markMonotonic, sel, stack); {
	case ok:
		return
	case found:
		c.report(sel.Pos(), what+" reads the host wall clock, and its "+markMonotonic+" marker gives no reason: say what the monotonic reading is used for")
	default:
		c.report(sel.Pos(), what+" reads the host wall clock: take the time from the corrected clock (timesource), or, if the reading only yields a duration, mark it `// "+markMonotonic+" <reason>`")
	}
}

func (c *wallclockChecker) checkLiteral(lit *ast.CompositeLit, stack []ast.Node) {
	var typ, field, unset, fix string
	switch {
	case c.isPkgSel(lit.Type, "crypto/tls", "Config"):
		typ, field, fix = "tls.Config", "Time", "set Time: clock.Now"
		unset = "nil" // Time: nil means time.Now
	case c.isPkgSel(lit.Type, "crypto/x509", "VerifyOptions"):
		typ, field, fix = "x509.VerifyOptions", "CurrentTime", "set CurrentTime: clock.Now()"
		unset = "time.Time{}" // the zero time means time.Now()
	default:
		return
	}
	problem := typ + " without " + field
	for _, e := range lit.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if key, ok := kv.Key.(*ast.Ident); ok && key.Name == field {
			problem = ""
			if c.isUnset(kv.Value) {
				problem = typ + " with " + field + ": " + unset
			}
		}
	}
	if problem == "" {
		return
	}
	msg := problem + ": certificate validity would be judged by the host clock (" + fix + ")"
	switch found, ok := c.marked(markWallclock, lit, stack); {
	case ok:
		return
	case found:
		msg += "; its " + markWallclock + " marker gives no reason"
	}
	c.report(lit.Pos(), msg)
}

// isUnset reports whether v is nil or time.Time{}, which leave the host
// clock in charge.
func (c *wallclockChecker) isUnset(v ast.Expr) bool {
	v = ast.Unparen(v)
	if id, ok := v.(*ast.Ident); ok && id.Name == "nil" && id.Obj == nil {
		return true
	}
	lit, ok := v.(*ast.CompositeLit)
	return ok && len(lit.Elts) == 0 && c.isPkgSel(lit.Type, "time", "Time")
}

func TestWallclockCheckerCases(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // each a substring of the violation at that index
	}{
		// Flagged.
		{"time.Now call", `package p

import "time"

func f() {
	t := time.Now()
	_ = t
}
`, []string{"case.go:6: time.Now() reads the host wall clock"}},
		{"time.Now value", `package p

import "time"

func f() {
	f := time.Now
	_ = f
}
`, []string{"case.go:6: time.Now as a value reads the host wall clock"}},
		{"time.Now returned as a default", `package p

import "time"

func now(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}
`, []string{"case.go:7: time.Now as a value"}},
		{"aliased import", `package p

import tm "time"

func f() { tm.Now() }
`, []string{`case.go:5: tm.Now() (package "time") reads`}},
		{"dot import", `package p

import . "time"

func f() { Now() }
`, []string{`case.go:3: dot-import of "time"`}},
		{"package-level var", `package p

import "time"

var started = time.Now()
`, []string{"case.go:5: time.Now()"}},
		{"inside a goroutine's func literal", `package p

import "time"

func f(ch chan time.Time) {
	go func() {
		ch <- time.Now()
	}()
}
`, []string{"case.go:7: time.Now()"}},
		{"deadline not directly the argument", `package p

import (
	"net"
	"time"
)

func f(c net.Conn, d time.Duration) {
	dl := time.Now().Add(d)
	c.SetDeadline(dl)
	c.SetDeadline(time.Now().Add(d).Add(d))
	c.SetDeadline(time.Now().Add(time.Now().Sub(dl)))
	c.SetTimeout(time.Now().Add(d))
}
`, []string{"case.go:9: time.Now()", "case.go:11: time.Now()", "case.go:12: time.Now()", "case.go:13: time.Now()"}},
		{"empty monotonic reason on the same line", `package p

import "time"

func f() {
	t0 := time.Now() // monotonic:
	_ = t0
}
`, []string{"case.go:6: time.Now() reads the host wall clock, and its monotonic: marker gives no reason"}},
		{"empty monotonic reason on the line above", `package p

import "time"

func f() {
	/* monotonic:   */
	t0 := time.Now()
	_ = t0
}
`, []string{"case.go:7: time.Now() reads the host wall clock, and its monotonic: marker gives no reason"}},
		{"trailing marker on the line above does not carry over", `package p

import "time"

func f() {
	a := time.Now() // monotonic: latency
	b := time.Now()
	_, _ = a, b
}
`, []string{"case.go:7: time.Now()"}},
		{"marker two lines above does not count", `package p

import "time"

func f() {
	// monotonic: latency

	b := time.Now()
	_ = b
}
`, []string{"case.go:8: time.Now()"}},
		{"tls.Config pointer without Time", `package p

import (
	"crypto/tls"
	"crypto/x509"
)

func f(p *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: p}
}
`, []string{"case.go:9: tls.Config without Time: certificate validity would be judged by the host clock (set Time: clock.Now)"}},
		{"empty tls.Config value, aliased import", `package p

import ctls "crypto/tls"

var c = ctls.Config{}
`, []string{"case.go:5: tls.Config without Time"}},
		{"tls.Config with Time nil", `package p

import "crypto/tls"

var c = &tls.Config{Time: nil}
`, []string{"case.go:5: tls.Config with Time: nil: certificate validity"}},
		{"tls.Config nested in a multi-line literal", `package p

import (
	"crypto/tls"
	"net/http"
)

var t = &http.Transport{
	TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
	},
}
`, []string{"case.go:9: tls.Config without Time"}},
		{"x509.VerifyOptions without CurrentTime", `package p

import "crypto/x509"

func f(c *x509.Certificate, r *x509.CertPool) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: r})
	return err
}
`, []string{"case.go:6: x509.VerifyOptions without CurrentTime: certificate validity would be judged by the host clock (set CurrentTime: clock.Now())"}},
		{"x509.VerifyOptions with zero CurrentTime", `package p

import (
	"crypto/x509"
	"time"
)

var o = x509.VerifyOptions{CurrentTime: time.Time{}}
`, []string{"case.go:8: x509.VerifyOptions with CurrentTime: time.Time{}"}},
		{"empty wallclock reason", `package p

import "crypto/tls"

// wallclock:
var c = &tls.Config{}
`, []string{"case.go:6: tls.Config without Time: certificate validity would be judged by the host clock (set Time: clock.Now); its wallclock: marker gives no reason"}},
		{"monotonic marker does not excuse a tls.Config", `package p

import "crypto/tls"

var c = &tls.Config{} // monotonic: wrong marker
`, []string{"case.go:5: tls.Config without Time"}},

		// Not flagged.
		{"socket deadlines", `package p

import (
	"net"
	"time"
)

type buf struct{ rc net.Conn }

func f(c net.Conn, b *buf, d time.Duration) {
	c.SetDeadline(time.Now().Add(d))
	c.SetReadDeadline(time.Now())
	b.rc.SetWriteDeadline((time.Now()).Add(time.Second))
	_ = c.SetDeadline(time.Now().Add(
		d,
	))
}
`, nil},
		{"monotonic marker on the same line", `package p

import "time"

func f() {
	t0 := time.Now() // monotonic: latency
	_ = time.Since(t0)
}
`, nil},
		{"monotonic marker alone on the line above", `package p

import "time"

func f() {
	// monotonic: duration for the access log
	start := time.Now()
	_ = start
}
`, nil},
		{"monotonic marker in a block comment", `package p

import "time"

func f() {
	start := time.Now() /* monotonic: latency */
	_ = start
}
`, nil},
		{"monotonic marker above a multi-line statement", `package p

import "time"

func f(g func(time.Time, int) int) {
	// monotonic: measures the exchange
	_ = g(
		time.Now(),
		1,
	)
}
`, nil},
		{"monotonic marker on a package-level var", `package p

import "time"

var started = time.Now() // monotonic: uptime
`, nil},
		{"Since, Until, Unix, Date and timers", `package p

import "time"

func f(t0, dl time.Time) {
	_ = time.Since(t0)
	_ = time.Until(dl)
	_ = time.Unix(0, 0)
	_ = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	<-time.After(time.Second)
	time.Sleep(time.Millisecond)
}
`, nil},
		{"tls.Config with Time", `package p

import (
	"crypto/tls"
	"time"
)

type clock interface{ Now() time.Time }

func f(clk clock) *tls.Config {
	return &tls.Config{Time: clk.Now, MinVersion: tls.VersionTLS12}
}
`, nil},
		{"x509.VerifyOptions with CurrentTime", `package p

import (
	"crypto/x509"
	"time"
)

type clock interface{ Now() time.Time }

func f(clk clock, r *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: r, CurrentTime: clk.Now()}
}
`, nil},
		{"wallclock marker above a server config", `package p

import "crypto/tls"

func f() *tls.Config {
	// wallclock: server side only, no client certificates are verified
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	return base
}
`, nil},
		{"wallclock marker on the same line", `package p

import "crypto/tls"

var c = &tls.Config{} // wallclock: server only
`, nil},
		{"tls.Config as a type only", `package p

import "crypto/tls"

func f(c *tls.Config) *tls.Config { return c.Clone() }
`, nil},
		{"local variable named time shadows the package", `package p

import "time"

type clock struct{}

func (clock) Now() time.Time { return time.Time{} }

func f(time clock) {
	_ = time.Now()
	g := func() {
		_ = time.Now
	}
	g()
}
`, nil},
		{"variable named time without the import", `package p

type clock struct{}

func (clock) Now() int { return 0 }

var time clock

func f() int { return time.Now() }
`, nil},
		{"field named time", `package p

import "time"

type clock struct{}

func (clock) Now() time.Time { return time.Time{} }

type s struct{ time clock }

func (x s) f() time.Time { return x.time.Now() }
`, nil},
		{"blank import and mentions in comments", `package p

import _ "time"

// time.Now() and &tls.Config{} in a comment are fine.
func f() {}
`, nil},
		{"other package's Config and Now", `package p

import "example.com/tls"

var c = tls.Config{}
var n = tls.Now()
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "case.go", tt.src, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			got := wallclockViolations(fset, f, []byte(tt.src))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d violations, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
