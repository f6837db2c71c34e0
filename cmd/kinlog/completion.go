package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Shell completion: the scripts ask the binary (`kinlog __complete WORDS...`) for the words
// that may come next, so they stay right as commands and flags change.
var completionScripts = map[string]string{
	"bash": `# kinlog completion for bash: source <(kinlog completion bash)
_kinlog() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	COMPREPLY=($(compgen -W "$(kinlog __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "$cur"))
}
complete -o default -F _kinlog kinlog
`,
	"zsh": `# kinlog completion for zsh: source <(kinlog completion zsh)
autoload -U +X bashcompinit && bashcompinit
_kinlog() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	COMPREPLY=($(compgen -W "$(kinlog __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)" -- "$cur"))
}
complete -o default -F _kinlog kinlog
`,
	"fish": `# kinlog completion for fish: kinlog completion fish | source
complete -c kinlog -f -a '(kinlog __complete (commandline -opc)[2..-1] 2>/dev/null)'
`,
}

func runCompletion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("completion", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 || completionScripts[fs.Arg(0)] == "" {
		return fmt.Errorf("%w: want one of bash, zsh, fish (kinlog completion bash)", errUsage)
	}
	_, err := io.WriteString(stdout, completionScripts[fs.Arg(0)])
	return err
}

var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// complete prints the words that may follow words (the command line after "kinlog",
// without the word being completed): commands first, then the command's flags and, for
// checkpoint, its subcommands.
func complete(ctx context.Context, words []string, stdout io.Writer) {
	if len(words) == 0 {
		for _, c := range commands() {
			fmt.Fprintln(stdout, c.name)
		}
		return
	}
	name := words[0]
	if name == "help" {
		for _, c := range commands() {
			fmt.Fprintln(stdout, c.name)
		}
		return
	}
	if name == "completion" {
		fmt.Fprintln(stdout, "bash\nzsh\nfish")
		return
	}
	if name == "checkpoint" && len(words) == 1 {
		fmt.Fprintln(stdout, "list\nreset\nimport-vmware\nderegister-consumer")
		return
	}
	args := []string{name, "--help"}
	if name == "checkpoint" {
		args = []string{name, words[1], "--help"}
	}
	var out bytes.Buffer
	run(ctx, args, &out, io.Discard)
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		fmt.Fprintln(stdout, "--"+strings.TrimSpace(m[1]))
	}
}
