#!/bin/sh
# The checks of `cargo xtask vm-test --systemd` (see xtask/src/vm_systemd.rs), run by
# vmtest.service in a Debian 12 guest whose PID 1 is systemd, from the payload disk mounted on
# /mnt (the .deb, read_hook.so built on the host from tests/fixtures/read_hook.c, this script).
# Each check prints one line on the serial console, "CHECK <name> pass|FAIL <seconds>s <detail>",
# followed after a failure by the service's journal; "SECURITY <line>" lines carry
# `systemd-analyze security detector`, and "SYSTEMD done" ends the run. xtask reads them and
# fails on a failed or missing check. A check that cannot run because an earlier one failed
# fails too.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export SYSTEMD_PAGER= SYSTEMD_COLORS=0
P=/mnt
HOOK=/tmp/rh.so
HOOK2=/tmp/rh2.so
CONF=/etc/detector/detector.toml
# Deadlines are about liveness: an emulated CPU (TCG) is several times slower than a real one.
WAIT=180
# Every kernel message reaches the console from here on (the boot kept it to errors): a soft
# lockup's or a stall's backtraces are printed below that level.
echo 8 > /proc/sys/kernel/printk

uptime_s() { cut -d' ' -f1 /proc/uptime; }
secs_since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_for SECONDS COMMAND...: runs COMMAND every half second until it succeeds.
wait_for() {
    limit=$1
    shift
    start=$(uptime_s)
    while ! "$@"; do
        if awk -v a="$start" -v b="$(uptime_s)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            return 1
        fi
        sleep 0.5
    done
}

# check NAME FUNCTION: runs FUNCTION, which sets DETAIL, and prints its result line. Its start
# is kept in CHECK_START, which no check function sets (wait_for and check_stop set `start`).
check() {
    name=$1
    DETAIL=
    CHECK_START=$(uptime_s)
    if "$2"; then
        echo "CHECK $name pass $(secs_since "$CHECK_START")s $DETAIL"
    else
        echo "CHECK $name FAIL $(secs_since "$CHECK_START")s $DETAIL"
        journalctl -b -u detector --no-pager -o short-monotonic 2>&1 | tail -n 40 | sed 's/^/    | /'
    fi
}

# The daemon's alerts in the journal, one per line: {"priority":P,"pid":PID,"alert":{...}}.
alerts() {
    journalctl -u detector -o json --no-pager 2>/dev/null | jq -c '
        select(.MESSAGE | type == "string" and startswith("{\"@timestamp\""))
        | {priority: .PRIORITY, pid: ._PID, alert: (.MESSAGE | fromjson)}
        | select(.alert.event.kind == "alert")'
}

# alert_for NAME LIBRARY: the first journal alert for process NAME preloading LIBRARY.
alert_for() {
    alerts | jq -c --arg n "$1" --arg l "$2" '
        select(.alert.process.name == $n and .alert.library.path == $l)' | head -n 1
}
has_alert_for() { [ -n "$(alert_for "$1" "$2")" ]; }

# The journal PRIORITY each severity must have.
priority_of() {
    case $1 in
        critical) echo 2 ;; high) echo 3 ;; medium) echo 4 ;; low) echo 5 ;; *) echo 6 ;;
    esac
}

main_pid() { systemctl show -p MainPID --value detector; }

check_pid1() {
    DETAIL="PID 1 is $(cat /proc/1/comm), system $(systemctl is-system-running)"
    [ "$(cat /proc/1/comm)" = systemd ]
}

check_install() {
    cp "$P/read_hook.so" "$HOOK" && chmod 0755 "$HOOK" || return 1
    deb=$(ls "$P"/detector_*.deb)
    if ! apt-get install -y -q "$deb" > /tmp/apt.out 2>&1; then
        DETAIL="apt-get install failed"
        sed 's/^/    | /' /tmp/apt.out
        return 1
    fi
    if ! systemd-analyze verify --man=no detector.service > /tmp/verify.out 2>&1 || [ -s /tmp/verify.out ]; then
        DETAIL="systemd-analyze verify --man=no detector.service: $(head -c 300 /tmp/verify.out)"
        return 1
    fi
    # The postinst enabled and started it.
    DETAIL="$(dpkg-query -W detector), $(systemctl is-enabled detector), $(systemctl is-active detector)"
    [ "$(systemctl is-enabled detector)" = enabled ] && [ "$(systemctl is-active detector)" = active ]
}

# `systemctl enable --now` returns once READY=1 came: the states seen meanwhile go from
# activating to active, and a preload made the moment it returns is caught (the programs are
# attached by then).
check_ready() {
    systemctl disable --now detector > /dev/null 2>&1
    [ "$(systemctl is-active detector)" = inactive ] || { DETAIL="not stopped"; return 1; }
    : > /tmp/states
    (systemctl enable --now detector > /dev/null 2>&1; echo "rc $?" > /tmp/enable.rc) &
    enabler=$!
    while kill -0 "$enabler" 2> /dev/null; do
        systemctl is-active detector >> /tmp/states
        sleep 0.2
    done
    wait "$enabler"
    LD_PRELOAD=$HOOK cat /etc/hostname > /dev/null
    seen=$(uniq /tmp/states | tr '\n' ' ')
    ready_after=$(systemctl show -p ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic detector |
        awk -F= '{ v[$1] = $2 } END { printf "%.1f", (v["ActiveEnterTimestampMonotonic"] - v["ExecMainStartTimestampMonotonic"]) / 1e6 }')
    DETAIL="$(cat /tmp/enable.rc), states: ${seen}, active ${ready_after} s after the start"
    grep -q '^rc 0$' /tmp/enable.rc && grep -q '^activating$' /tmp/states &&
        [ "$(systemctl is-active detector)" = active ] && [ "$(systemctl show -p Type --value detector)" = notify ]
}

# The alert for the preload made as `enable --now` returned, with the journal priority its
# severity maps to.
check_journal_cat() {
    if ! wait_for "$WAIT" has_alert_for cat "$HOOK"; then
        DETAIL="no alert for cat preloading $HOOK in the journal"
        return 1
    fi
    a=$(alert_for cat "$HOOK")
    CAT_SEVERITY=$(echo "$a" | jq -r .alert.severity)
    p=$(echo "$a" | jq -r .priority)
    DETAIL="$(echo "$a" | jq -c '[.alert.rule.name, .alert.severity, .alert.detections, .alert.library.hooks]') PRIORITY=$p"
    [ "$p" = "$(priority_of "$CAT_SEVERITY")" ] &&
        echo "$a" | jq -e '.alert.library.hooks | index("read")' > /dev/null
}

check_journal_ssh() {
    LD_PRELOAD=$HOOK ssh -V 2> /dev/null
    if ! wait_for "$WAIT" has_alert_for ssh "$HOOK"; then
        DETAIL="no alert for ssh preloading $HOOK in the journal"
        return 1
    fi
    a=$(alert_for ssh "$HOOK")
    p=$(echo "$a" | jq -r .priority)
    sev=$(echo "$a" | jq -r .alert.severity)
    # journalctl -p crit selects it.
    crit=$(journalctl -u detector -p crit -o cat --no-pager | grep -c '"name":"ssh"')
    DETAIL="$(echo "$a" | jq -c '[.alert.rule.name, .alert.severity, .alert.detections]') PRIORITY=$p, $crit at -p crit"
    [ "$sev" = critical ] && [ "$p" = 2 ] && [ "$crit" -ge 1 ]
}

# A library in /dev/shm (the service has a private /dev that binds the host's /dev/shm): the
# daemon reads it, hashes it and finds its hook.
check_devshm() {
    cp "$HOOK" /dev/shm/rh3.so
    LD_PRELOAD=/dev/shm/rh3.so cat /etc/hostname > /dev/null
    if ! wait_for "$WAIT" has_alert_for cat /dev/shm/rh3.so; then
        DETAIL="no alert for cat preloading /dev/shm/rh3.so in the journal"
        return 1
    fi
    a=$(alert_for cat /dev/shm/rh3.so)
    DETAIL="$(echo "$a" | jq -c '[.alert.library.unsafe_reasons, .alert.library.hooks, .alert.library.hash.sha256[0:16]]')"
    echo "$a" | jq -e '(.alert.library.hooks | index("read")) and (.alert.library.hash.sha256 | length == 64)' > /dev/null
}

# journald forwards the unit's stdout to rsyslog, which writes /var/log/syslog.
in_syslog() { grep -F '"name":"ssh"' /var/log/syslog 2> /dev/null | grep -qF "\"path\":\"$HOOK\""; }
check_syslog() {
    if ! wait_for "$WAIT" in_syslog; then
        DETAIL="no ssh alert in /var/log/syslog ($(wc -l < /var/log/syslog) lines)"
        return 1
    fi
    DETAIL="$(grep -F '"name":"ssh"' /var/log/syslog | grep -F "\"path\":\"$HOOK\"" | head -n 1 | cut -c1-100)..."
}

# A changed configuration (min_severity high, and a file output) is applied by
# `systemctl reload` without a restart: the next critical alert reaches the file, a preload
# into cat (below high) reaches no output.
in_file() {
    grep -F '"name":"ssh"' /var/log/detector/alerts.jsonl 2> /dev/null | grep -qF "\"path\":\"$HOOK2\""
}
reloaded() { journalctl _PID="$1" -o cat --no-pager | grep -q 'configuration reloaded'; }
check_reload() {
    case $CAT_SEVERITY in
        info | low | medium) ;;
        *) DETAIL="cat's alert is '$CAT_SEVERITY'; this check needs one below high"; return 1 ;;
    esac
    pid=$(main_pid)
    cp "$CONF" /tmp/detector.toml.orig
    sed -i -e 's/^min_severity = "info"$/min_severity = "high"/' \
        -e 's|^#file = "/var/log/detector/alerts.jsonl"$|file = "/var/log/detector/alerts.jsonl"|' "$CONF"
    grep -q '^min_severity = "high"$' "$CONF" && grep -q '^file = ' "$CONF" || { DETAIL="could not edit $CONF"; return 1; }
    systemctl reload detector || { DETAIL="systemctl reload failed"; return 1; }
    wait_for "$WAIT" reloaded "$pid" || { DETAIL="the daemon did not log a reload"; return 1; }
    cp "$HOOK" "$HOOK2"
    LD_PRELOAD=$HOOK2 cat /etc/hostname > /dev/null
    LD_PRELOAD=$HOOK2 ssh -V 2> /dev/null
    if ! wait_for "$WAIT" in_file; then
        DETAIL="no ssh alert in /var/log/detector/alerts.jsonl"
        return 1
    fi
    # cat's alert, had it passed, would have come within the enrichment deadline of ssh's.
    sleep 15
    cat_alerts=$(alerts | jq -c --arg l "$HOOK2" 'select(.alert.process.name == "cat" and .alert.library.path == $l)' | wc -l)
    DETAIL="main pid $pid -> $(main_pid), file: $(wc -l < /var/log/detector/alerts.jsonl) lines ($(stat -c %a /var/log/detector/alerts.jsonl)), cat alerts after the reload: $cat_alerts"
    [ "$(main_pid)" = "$pid" ] && [ "$cat_alerts" = 0 ]
}

check_stop() {
    pid=$(main_pid)
    start=$(uptime_s)
    systemctl stop detector
    took=$(secs_since "$start")
    r=$(systemctl show -p Result,ExecMainCode,ExecMainStatus detector | tr '\n' ' ')
    state=$(systemctl is-active detector)
    DETAIL="stopped in ${took} s: $r$state"
    [ "$state" = inactive ] && echo "$r" | grep -q 'Result=success' && echo "$r" | grep -q 'ExecMainStatus=0' &&
        ! kill -0 "$pid" 2> /dev/null
}

# kill -9 of the daemon: Restart= starts it again, and the new daemon's start-up sweep reports a
# process of another user (nobody) still running with the hook preloaded.
restarted() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$1" ] && [ "$(systemctl is-active detector)" = active ]; }
swept() {
    alerts | jq -e --argjson pid "$1" --arg d "$2" '
        select(.pid == $d and .alert.event.dataset == "detector.sweep" and .alert.process.pid == $pid)' > /dev/null
}
check_restart() {
    # The packaged configuration again: the sleeper's alert is below high.
    cp /tmp/detector.toml.orig "$CONF"
    systemctl start detector || { DETAIL="systemctl start failed"; return 1; }
    setpriv --reuid=65534 --regid=65534 --clear-groups env LD_PRELOAD=$HOOK sleep 100000 &
    SLEEPER=$!
    sleep 1
    old=$(main_pid)
    before=$(systemctl show -p NRestarts --value detector)
    kill -9 "$old"
    if ! wait_for "$WAIT" restarted "$old"; then
        DETAIL="not restarted after kill -9 of $old: $(systemctl is-active detector)"
        return 1
    fi
    new=$(main_pid)
    if ! wait_for "$WAIT" swept "$SLEEPER" "$new"; then
        DETAIL="restarted ($old -> $new) but no detector.sweep alert for the preloaded sleep $SLEEPER (uid 65534)"
        return 1
    fi
    DETAIL="main pid $old -> $new, NRestarts $before -> $(systemctl show -p NRestarts --value detector), sweep alert for pid $SLEEPER (uid $(stat -c %u /proc/$SLEEPER))"
}

# `systemd-analyze security` on the running unit: its table and overall exposure, for the README.
security() {
    systemd-analyze security detector --no-pager 2>&1 | sed 's/^/SECURITY /'
}

# `detector selftest --against-service`: the installed binary's atomic tests, judged on the
# alerts the restarted service (packaged configuration: stdout, so the journal) writes. It must
# exit 0, leave no detector-selftest-* directory in /tmp and no process of its own, and leave the
# service running as it was.
selftest_left() {
    ls -d /tmp/detector-selftest-* 2> /dev/null
    pgrep -a -f 'detector selftest|selftest-memfd-load'
}
check_selftest() {
    pid=$(main_pid)
    detector selftest --against-service --timeout 120 > /tmp/selftest.out 2>&1
    rc=$?
    left=$(selftest_left | tr '\n' ' ')
    DETAIL="rc $rc: $(tail -n 1 /tmp/selftest.out | cut -c1-120); main pid $pid -> $(main_pid); left: ${left:-nothing}"
    sed 's/^/    | /' /tmp/selftest.out
    [ "$rc" = 0 ] && [ -z "$left" ] && [ "$(main_pid)" = "$pid" ] &&
        [ "$(systemctl is-active detector)" = active ]
}

purged() { [ ! -e /lib/systemd/system/detector.service ] && [ "$(systemctl is-active detector)" != active ]; }
check_purge() {
    kill "$SLEEPER" 2> /dev/null
    if ! apt-get purge -y -q detector > /tmp/apt.out 2>&1; then
        DETAIL="apt-get purge failed"
        sed 's/^/    | /' /tmp/apt.out
        return 1
    fi
    left=$(ls -d /etc/detector /var/log/detector /usr/bin/detector /lib/systemd/system/detector.service \
        /etc/systemd/system/multi-user.target.wants/detector.service 2> /dev/null | tr '\n' ' ')
    DETAIL="$(systemctl is-active detector), left: ${left:-nothing}"
    purged && [ -z "$left" ] && ! pgrep -x detector > /dev/null
}

echo "SYSTEMD start $(uname -r) at $(uptime_s) s"
check pid1 check_pid1
check install check_install
check ready check_ready
check journal_cat check_journal_cat
check journal_ssh check_journal_ssh
check devshm check_devshm
check syslog check_syslog
check reload check_reload
check stop check_stop
check restart check_restart
security
check selftest check_selftest
check purge check_purge
echo "SYSTEMD done at $(uptime_s) s"
sync
systemctl poweroff --force --force
