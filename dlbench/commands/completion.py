"""dlbench completion bash: a bash completion script for dlbench's commands, config groups, their
options and keys. Install it with

    eval "$(dlbench completion bash)"        # in ~/.bashrc

The first word completes to a subcommand; `list` to what it lists; everything else (overrides)
asks Hydra's own completion (`dlbench -sc query=bash`), which knows every group, option and key,
including the components registered from code."""

from __future__ import annotations

from dlbench import terminal
from dlbench.errors import DlbenchError

BASH = r"""# dlbench's bash completion: eval "$(dlbench completion bash)"
_dlbench() {
    local cur="${COMP_WORDS[COMP_CWORD]}" first="${COMP_WORDS[1]}"
    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 && "$cur" != *=* && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
    fi
    case "$first" in
        list)
            local kinds="@KINDS@"
            [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "$kinds" -- "$cur"))
            return ;;
        new)
            [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "experiment model" -- "$cur"))
            return ;;
        completion)
            COMPREPLY=($(compgen -W "bash" -- "$cur"))
            return ;;
        eval|predict|compare|export|board|report)
            [[ "$cur" != *=* ]] && COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
    esac
    local line="$COMP_LINE"
    if [[ "$first" == "train" || "$first" == "show" || "$first" == "lr-find" ]]; then
        line="${line/ $first / }"
    fi
    local choices
    choices=$(COMP_POINT=${#line} COMP_LINE="$line" dlbench -sc query=bash 2>/dev/null)
    COMPREPLY+=($(compgen -W "$choices" -- "$cur"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _dlbench dlbench
"""


def completion_command(args: list[str]) -> int:
    if args != ["bash"]:
        raise DlbenchError('usage: dlbench completion bash   (then: eval "$(dlbench completion bash)")')
    from dlbench.cli import COMMANDS
    from dlbench.commands.listing import KINDS

    terminal.write(BASH.replace("@COMMANDS@", " ".join(COMMANDS)).replace("@KINDS@", " ".join(KINDS)))
    return 0
