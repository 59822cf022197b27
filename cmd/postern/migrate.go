package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/postern-dev/postern/controller"
)

// maxValueShown is how much of a value a row of `postern migrate`'s table
// shows (a snippet is many lines); JSON has it whole.
const maxValueShown = 40

// errUnsupportedFound is returned by `postern migrate` when something it
// found is unsupported, after the report: the exit status says so.
var errUnsupportedFound = errors.New("not served as written (see the report)")

// migrateStatuses are the statuses in the order the summary counts them.
var migrateStatuses = []controller.NginxStatus{
	controller.NginxSupported, controller.NginxPartial, controller.NginxIgnored, controller.NginxUnsupported, controller.NginxUnknown,
}

// runMigrate is `postern migrate`: it reads the Ingresses of ingress-nginx's
// class (from a folder of manifests, or from the cluster) and, if asked,
// ingress-nginx's ConfigMap, and reports what Postern does with each
// annotation and key. It fails when something is unsupported. Warnings
// (files that do not parse) go to stderr.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("postern migrate", flag.ContinueOnError)
	var m migrateFlags
	fs.StringVar(&m.manifests, "manifests", "", "read the manifests in this folder (recursively) instead of a cluster")
	fs.StringVar(&m.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to read (default: in-cluster, else $KUBECONFIG)")
	fs.StringVar(&m.class, "ingress-class", "nginx", "ingress-nginx's IngressClass: its Ingresses are read, and those without a class when it is the default one")
	fs.StringVar(&m.prefix, "annotations-prefix", controller.DefaultAnnotationsPrefix, "prefix of the ingress-nginx annotations, as ingress-nginx's flag")
	fs.StringVar(&m.configMap, "nginx-configmap", "", "namespace/name of ingress-nginx's controller ConfigMap to report on too, in the cluster or the folder")
	fs.StringVar(&m.output, "output", "table", "table (for a terminal) or json")
	fs.DurationVar(&m.timeout, "timeout", 30*time.Second, "how long reading the cluster may take")
	if err := parseCommand(fs, args, stdout, "migrate", "Reports what Postern does with the ingress-nginx annotations of the Ingresses of a class,\n"+
		"and with the keys of ingress-nginx's ConfigMap. Exits 1 when something is unsupported."); err != nil {
		return err
	}
	if err := m.check(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	var in controller.MigrationInput
	if m.manifests != "" {
		var problems []controller.Problem
		var err error
		in, problems, err = controller.ReadMigrationManifests(m.manifests, m.configMap)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "postern migrate: warning: %s: %s\n", p.Name, p.Message)
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, m.timeout)
		defer cancel()
		var err error
		if in, err = controller.ReadMigrationCluster(ctx, m.kubeconfig, m.configMap); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	ings := controller.IngressesOfClass(in.Ingresses, in.IngressClasses, m.class)
	findings := append(controller.NginxFindings(ings, m.prefix), controller.NginxConfigMapFindings(in.ConfigMap)...)

	summary := migrateSummary(len(ings), m.class, findings)
	if m.output == "json" {
		if findings == nil {
			findings = []controller.NginxFinding{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintln(stderr, summary)
	} else if err := printFindings(stdout, findings, summary); err != nil {
		return err
	}
	if n := countStatus(findings, controller.NginxUnsupported); n > 0 {
		what := "findings are"
		if n == 1 {
			what = "finding is"
		}
		return fmt.Errorf("migrate: %d %s unsupported by Postern, %w", n, what, errUnsupportedFound)
	}
	return nil
}

// migrateFlags are the flags of `postern migrate`.
type migrateFlags struct {
	manifests, kubeconfig, class, prefix, configMap, output string
	timeout                                                 time.Duration
}

func (m *migrateFlags) check() error {
	switch {
	case m.output != "table" && m.output != "json":
		return fmt.Errorf("invalid value %q for --output: want table or json", m.output)
	case m.class == "":
		return errors.New("--ingress-class must not be empty")
	case m.manifests != "" && m.kubeconfig != "":
		return errors.New("--manifests and --kubeconfig are exclusive: read a folder or a cluster")
	case m.timeout <= 0:
		return fmt.Errorf("invalid value %s for --timeout: want a positive duration", m.timeout)
	}
	if m.configMap != "" {
		if ns, name, ok := strings.Cut(m.configMap, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("invalid value %q for --nginx-configmap: want namespace/name", m.configMap)
		}
	}
	if err := checkAnnotationsPrefix(m.prefix); err != nil {
		return err
	}
	if m.manifests != "" {
		return checkManifestsDir(m.manifests)
	}
	return nil
}

// printFindings writes the findings as aligned columns, the annotations
// first, then the ConfigMap keys, then the summary.
func printFindings(w io.Writer, findings []controller.NginxFinding, summary string) error {
	var ann, keys []controller.NginxFinding
	for _, f := range findings {
		if f.Kind == controller.FindingConfigMap {
			keys = append(keys, f)
		} else {
			ann = append(ann, f)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(ann) > 0 {
		fmt.Fprintln(tw, "NAMESPACE\tINGRESS\tANNOTATION\tVALUE\tSTATUS\tNOTE")
		for _, f := range ann {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Namespace, f.Ingress, f.Annotation, cell(f.Value, maxValueShown), f.Status, cell(f.Note, 0))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintln(w)
	}
	if len(keys) > 0 {
		fmt.Fprintln(tw, "CONFIGMAP\tKEY\tVALUE\tSTATUS\tFLAG\tNOTE")
		for _, f := range keys {
			flagName := f.Flag
			if flagName == "" {
				flagName = "-"
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\n", f.Namespace, f.ConfigMap, f.Key, cell(f.Value, maxValueShown), f.Status, flagName, cell(f.Note, 0))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintln(w, summary)
	return err
}

// cell puts s on one line for a table cell: runs of white space (a
// snippet's newlines) become one space, and past limit runes (0: no
// limit) it is cut. An empty cell is "-", so that columns stay aligned.
func cell(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		return string([]rune(s)[:limit]) + "..."
	}
	return s
}

// migrateSummary is the report's last line: what was read and how many
// findings have each status.
func migrateSummary(ingresses int, class string, findings []controller.NginxFinding) string {
	parts := make([]string, 0, len(migrateStatuses))
	for _, s := range migrateStatuses {
		parts = append(parts, fmt.Sprintf("%d %s", countStatus(findings, s), s))
	}
	noun := "Ingresses"
	if ingresses == 1 {
		noun = "Ingress"
	}
	return fmt.Sprintf("%d %s of class %s, %d findings: %s", ingresses, noun, class, len(findings), strings.Join(parts, ", "))
}

func countStatus(findings []controller.NginxFinding, s controller.NginxStatus) int {
	n := 0
	for _, f := range findings {
		if f.Status == s {
			n++
		}
	}
	return n
}
