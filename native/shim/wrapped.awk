# Turns wrapped.def into wrapped.h, the shim's plumbing, written to the file
# named by -v out=FILE; CMake runs it at build time. A generator because the C
# preprocessor cannot make a macro per function, which WRAPPER(name) is. For
# each line "RET NAME(PARAMS) POLICY[(ARGS)]" of the list:
#   WRAPPER_NAME         the wrapper's first line, as the list declares it;
#   WRAPPED_REAL(X)      X(RET, NAME, (PARAMS)) unless POLICY is NO_REAL: the
#                        pointers to the real functions (real.h);
#   WRAPPED_<POLICY>(X)  for a policy other than CUSTOM and NO_REAL,
#                        X(RET, NAME, (CALL ARGS), FAIL[, ARGS]) for each of
#                        its functions: the parameters to pass on by name (not
#                        the variable ones), and what the wrapper returns when
#                        it fails before the call (NULL for a pointer, else
#                        -1). The policy's family file expands it with the
#                        policy's template.

function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }

function fail(msg) { printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"; failed = 1; exit 1 }

# The parameter's name: the identifier in (*name) of a function pointer,
# else the last one, past any [N].
function param_name(p) {
	if (match(p, /\(\*[ \t]*[A-Za-z_][A-Za-z0-9_]*/)) return trim(substr(p, RSTART + 2, RLENGTH - 2))
	sub(/[ \t]*\[[^]]*\][ \t]*$/, "", p)
	if (!match(p, /[A-Za-z_][A-Za-z0-9_]*$/)) fail("no parameter name in '" p "'")
	return substr(p, RSTART)
}

# Splits s at the commas outside parentheses into items[1..n]; returns n.
function split_top(s, items,    n, depth, i, c, start) {
	n = 0; depth = 0; start = 1
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (c == "(") depth++
		else if (c == ")") depth--
		else if (c == "," && depth == 0) { items[++n] = trim(substr(s, start, i - start)); start = i + 1 }
	}
	if (trim(substr(s, start)) != "") items[++n] = trim(substr(s, start))
	return n
}

/^[ \t]*(#|$)/ { next }

{
	line = trim($0)
	lp = index(line, "(")
	if (!lp) fail("not RET NAME(PARAMS) POLICY")
	head = trim(substr(line, 1, lp - 1))
	if (!match(head, /[A-Za-z_][A-Za-z0-9_]*$/)) fail("no function name")
	name = substr(head, RSTART)
	ret = trim(substr(head, 1, RSTART - 1))
	depth = 0
	for (rp = lp; rp <= length(line); rp++) {
		c = substr(line, rp, 1)
		if (c == "(") depth++
		else if (c == ")" && --depth == 0) break
	}
	params = substr(line, lp, rp - lp + 1)
	policy = trim(substr(line, rp + 1))
	policy_args = ""
	if (p = index(policy, "(")) {
		policy_args = substr(policy, p + 1, length(policy) - p - 1)
		policy = trim(substr(policy, 1, p - 1))
	}
	if (ret == "" || policy !~ /^[A-Z][A-Z0-9_]*$/) fail("not RET NAME(PARAMS) POLICY")
	if (name in seen) fail(name " is listed twice")
	seen[name] = 1

	signatures = signatures "#define WRAPPER_" name " SHIM_EXPORT " ret (ret ~ /\*$/ ? "" : " ") name params "\n"
	if (policy != "NO_REAL") real[++nreal] = "X(" ret ", " name ", " params ")"
	if (policy == "CUSTOM" || policy == "NO_REAL") next

	n = split_top(substr(params, 2, length(params) - 2), list)
	args = ""
	for (i = 1; i <= n; i++) {
		if (list[i] == "..." || (n == 1 && list[i] == "void")) continue
		args = args (args == "" ? "" : ", ") param_name(list[i])
	}
	if (!(policy in count)) order[++npolicies] = policy
	generated[policy, ++count[policy]] = "X(" ret ", " name ", (" args "), " (ret ~ /\*$/ ? "NULL" : "-1") \
		(policy_args == "" ? "" : ", " policy_args) ")"
}

# One macro of X(...) lines.
function print_list(macro, lines, n,    i) {
	printf "#define %s(X)", macro > out
	for (i = 1; i <= n; i++) printf " \\\n\t%s", lines[i] > out
	printf "\n\n" > out
}

END {
	if (failed) exit 1
	print "/* Generated from native/shim/wrapped.def by native/shim/wrapped.awk: edit those. */" > out
	print "#ifndef APPSHOT_SHIM_WRAPPED_H" > out
	print "#define APPSHOT_SHIM_WRAPPED_H\n" > out
	print "/* WRAPPER(name) { ... } defines name's wrapper with the list's signature. */" > out
	print "#define WRAPPER(name) WRAPPER_##name" > out
	printf "%s\n", signatures > out
	print_list("WRAPPED_REAL", real, nreal)
	for (k = 1; k <= npolicies; k++) {
		delete lines
		for (i = 1; i <= count[order[k]]; i++) lines[i] = generated[order[k], i]
		print_list("WRAPPED_" order[k], lines, count[order[k]])
	}
	print "#endif" > out
}
