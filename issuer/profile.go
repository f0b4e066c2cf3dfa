package issuer

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// checkProfile refuses a profile ca's directory does not list in
// meta.profiles, before any order is placed; "" (the CA's default) passes.
func (i *Issuer) checkProfile(ctx context.Context, ca *caClient, profile string) error {
	if profile == "" {
		return nil
	}
	core, err := i.core(ctx, ca)
	if err != nil {
		return fmt.Errorf("profile %q: reading the profiles of CA %s: %w", profile, ca.Name, err)
	}
	return profileOffered(core.GetDirectory().Meta.Profiles, profile, ca.Directory)
}

// profileOffered checks profile against a directory's meta.profiles (name
// to description) and names the known ones when it is not there.
func profileOffered(offered map[string]string, profile, directory string) error {
	if _, ok := offered[profile]; ok {
		return nil
	}
	if len(offered) == 0 {
		return fmt.Errorf("%w: profile %q: the CA at %s offers no profiles; drop --profile (and [issuer] profile)", ErrInvalid, profile, directory)
	}
	names := make([]string, 0, len(offered))
	for n := range offered {
		names = append(names, n)
	}
	slices.Sort(names)
	known := make([]string, 0, len(names))
	for _, n := range names {
		if d := strings.TrimSpace(offered[n]); d != "" {
			known = append(known, fmt.Sprintf("%s (%s)", n, d))
		} else {
			known = append(known, n)
		}
	}
	return fmt.Errorf("%w: profile %q is not offered by the CA at %s; known profiles: %s", ErrInvalid, profile, directory, strings.Join(known, ", "))
}
