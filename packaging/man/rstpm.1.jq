# rstpm(1) from `rstpm --experimental-dump-help` (swift-argument-parser's ToolInfo JSON), so the
# page lists exactly the commands and options of the binary it ships with.
# Usage: rstpm --experimental-dump-help | jq -r --arg version VERSION -f rstpm.1.jq
def text: gsub("\\\\"; "\\e") | split("\n") | map(if startswith(".") or startswith("'") then "\\&" + . else . end) | join("\n");
def dashes: gsub("-"; "\\-");
def name: if .kind == "short" then "\\-" + (.name | dashes) else "\\-\\-" + (.name | dashes) end;
def value: "\\fI" + (.valueName | dashes) + "\\fR" + (if .isRepeating then " ..." else "" end);
def item:
  if .kind == "positional" then value
  else ([.names[] | name] | join(", ")) + (if .kind == "option" then " " + value else "" end)
  end;
def argument:
  ".TP\n" + item + "\n"
  + ((.abstract // "") | text)
  + (if .defaultValue != null and .kind != "flag" then " (default: " + (.defaultValue | text) + ")" else "" end);
def visible: [.arguments[]? | select(.shouldDisplay and ([.names[]?.name] | index("help") | not))];
def command($path):
  ($path + " " + .commandName) as $here
  | ".SS \"" + ($here | ltrimstr(" ") | dashes) + "\"\n"
    + ((.abstract // "") | text)
    + (if (.discussion // "") != "" then "\n.PP\n" + (.discussion | text) else "" end)
    + ([visible[] | "\n" + argument] | join(""))
    + ([.subcommands[]? | select(.commandName != "help") | "\n" + command($here)] | join(""));

.command as $root
| ".TH RSTPM 1 \"\" \"rstpm \($version)\" \"User Commands\"\n"
+ ".SH NAME\nrstpm \\- " + ($root.abstract | text) + "\n"
+ ".SH SYNOPSIS\n.B rstpm\n.I COMMAND\n.RI [ OPTIONS ]\n.br\n.B rstpm \\-\\-version\n"
+ ".SH DESCRIPTION\n"
+ "Trains RSTPM models on images of good parts, inspects images with them, evaluates them on\n"
+ "MVTec AD categories and prepares inspection lines for\n.BR rstpmd (8).\n"
+ "Every command takes \\fB\\-\\-help\\fR; \\fBrstpm help\\fR \\fICOMMAND\\fR prints the same.\n"
+ ".SH COMMANDS\n"
+ ([$root.subcommands[] | select(.commandName != "help") | command("rstpm")] | join("\n")) + "\n"
+ ".SH ENVIRONMENT\n.TP\n.B RSTPM_WEIGHTS\nThe teachers' checkpoints (else \\fI$XDG_DATA_HOME/rstpm/weights\\fR, else \\fI~/.local/share/rstpm/weights\\fR);\n"
+ "rstpmd's unit uses \\fI/var/lib/rstpmd/weights\\fR: \\fBrstpm weights fetch \\-\\-dir /var/lib/rstpmd/weights\\fR.\n"
+ ".SH EXIT STATUS\n0 on success, 1 on a failure, 64 on a usage error.\n"
+ ".SH FILES\n.TP\n.I /usr/share/doc/rstpm/\nREADME.md, rstpmd.md (the daemon), verdict.md (the verdict format).\n"
+ ".SH SEE ALSO\n.BR rstpmd (8),\n.BR rstpmd.yaml (5)\n"
