# Sourced by the campaign scripts: FINISH_BY=HH:MM becomes the ISO moment it names when the campaign starts, so
# that every command of a campaign that runs past that moment reads the same end (each reading HH:MM anew would,
# once the moment has passed, take it for the next day's). An ISO date-time passes through unchanged; a value that
# is neither stops the campaign with one line and exit code 2.
if [ -n "${FINISH_BY:-}" ]; then
  # the project's environment where it is set up, else a python3 that holds torch (a lent GPU machine)
  finish_by_py=.venv/bin/python
  [ -x "$finish_by_py" ] || finish_by_py=python3
  FINISH_BY=$(PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$finish_by_py" -c "
import sys
from kdforge.bench.deadline import parse_finish_by
from kdforge.errors import UserError
try:
    print(parse_finish_by(sys.argv[1]).isoformat(timespec='minutes'))
except UserError as e:
    sys.exit(f'FINISH_BY: {e}')" "$FINISH_BY") || exit 2
  export FINISH_BY
  echo "FINISH_BY: $FINISH_BY"
fi
