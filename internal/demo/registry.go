package demo

import "secondopinion/internal/registry"

// demoRegistry is the embedded default registry: three arbodiensten, an
// original physician, second-opinion physicians in and outside the pool
// (one of them of the original physician's own arbodienst, whom the
// procedure never proposes), and the employer.
func demoRegistry() *registry.Registry {
	return &registry.Registry{
		Arbodiensten: []registry.Arbodienst{
			{ID: "arbo-noord", Name: "Arbo Noord"},
			{ID: "arbo-zuid", Name: "Arbo Zuid"},
			{ID: "arbo-west", Name: "Arbodienst West"},
			{ID: "arbo-oost", Name: "Arbo Oost"},
		},
		Physicians: []registry.Physician{
			{ID: "devries", Name: "A. de Vries", Email: addrOriginal, Arbodienst: "arbo-noord", Languages: []string{"nl"}, Roles: []string{registry.RoleOriginal}},
			{ID: "visser", Name: "D. Visser", Email: addrVisser, Arbodienst: "arbo-noord", Pool: true, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "bakker", Name: "B. Bakker", Email: addrBakker, Arbodienst: "arbo-zuid", Pool: true, Languages: []string{"nl", "en"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "jansen", Name: "C. Jansen", Email: addrJansen, Arbodienst: "arbo-west", Pool: true, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "smit", Name: "E. Smit", Email: addrSmit, Arbodienst: "arbo-oost", Pool: false, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
		},
		Employers: []registry.Employer{
			{ID: "acme", Name: "Acme Logistiek BV", Contract: registry.ContractFullService, NoticeEmail: addrEmployer, Domains: []string{"acme.example"}},
		},
	}
}
