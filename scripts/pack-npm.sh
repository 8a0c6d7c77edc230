#!/usr/bin/env bash
# Builds the npm packages of balena-release-update for this machine's
# platform (linux-x64-gnu here): the Node-API addon (crates/balena-release-node,
# through @napi-rs/cli) and the command, both in release mode, then writes
# two tarballs to target/npm/ with `npm pack`:
#
#   target/npm/balena-release-update-<version>.tgz              the JS package
#   target/npm/balena-release-update-<platform>-<version>.tgz   addon + command
#
# Install both at once, e.g.
#   npm install --global target/npm/balena-release-update-*.tgz
#
# Needs cargo, Node >= 18.17 and npm; the first run installs @napi-rs/cli
# (npm/balena-release-update's devDependency) from the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=$target_dir/npm
pkg=$root/npm/balena-release-update

platform=$(node -e 'process.stdout.write(require(process.argv[1]).platformKey())' "$pkg/binding.cjs")
if [[ ! -f $root/npm/$platform/package.json ]]; then
	echo "pack-npm: no platform package npm/$platform for this machine" >&2
	exit 1
fi

# Every published package.json (the main package and the platform
# packages; not the test or benchmark projects) carries the command's version.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
for manifest in "$pkg/package.json" "$root"/npm/{darwin,linux,win32}-*/package.json; do
	found=$(node -p 'require(process.argv[1]).version' "$manifest")
	if [[ $found != "$version" ]]; then
		echo "pack-npm: $manifest has version $found, Cargo.toml has $version" >&2
		exit 1
	fi
done

echo "pack-npm: @napi-rs/cli"
if [[ ! -x $pkg/node_modules/.bin/napi ]]; then
	(cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error)
fi

stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/main" "$stage/platform"

echo "pack-npm: the command (cargo build --release)"
cargo build --release --locked --quiet -p balena-release-update --bin balena-release-update
exe=balena-release-update
[[ $platform == win32-* ]] && exe=balena-release-update.exe

echo "pack-npm: the addon (napi build --release)"
(cd "$pkg" && ./node_modules/.bin/napi build \
	--manifest-path "$root/crates/balena-release-node/Cargo.toml" \
	--package-json-path "$pkg/package.json" \
	--target-dir "$target_dir" \
	--platform --release --no-js --strip \
	--output-dir "$stage/platform" -- --locked)

# The platform package: its manifest and README, the addon and the command.
cp "$root/npm/$platform/package.json" "$root/npm/$platform/README.md" "$stage/platform/"
cp "$target_dir/release/$exe" "$stage/platform/$exe"
if command -v strip >/dev/null && [[ $platform == linux-* ]]; then
	strip "$stage/platform/$exe"
fi
node_file=balena-release-update.$platform.node
[[ -f $stage/platform/$node_file ]] || {
	echo "pack-npm: napi build wrote no $node_file" >&2
	exit 1
}

# The JS package: what its `files` lists.
(cd "$pkg" && cp --parents index.cjs index.mjs index.d.ts binding.cjs bin/balena-release-update.js README.md package.json "$stage/main/")
chmod +x "$stage/main/bin/balena-release-update.js"

rm -f "$out"/balena-release-update-*.tgz
for dir in main platform; do
	(cd "$stage/$dir" && npm pack --silent --pack-destination "$out" >/dev/null)
done
rm -rf "$stage"
ls -l "$out"/*.tgz | awk '{ print "pack-npm: " $NF " (" $5 " bytes)" }'
