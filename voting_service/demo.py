"""Demo campaign for ``voting-service up``.

A freshly started service should have something realistic to show, so this module builds a
"江苏最美工匠" campaign that is open for the whole current year, with 60 candidates spread over
Jiangsu's 13 prefecture-level cities. Every person and company here is FICTIONAL: names, employers
and deeds are composed from fragments with a fixed seed, so every run gives the same output.

    python -m voting_service.demo > demo.json
"""

from __future__ import annotations

import datetime
import json
import random
from typing import NamedTuple

_SEED = 20260101
_CST = datetime.timezone(datetime.timedelta(hours=8))

CITIES: tuple[str, ...] = (
    "南京市",
    "无锡市",
    "徐州市",
    "常州市",
    "苏州市",
    "南通市",
    "连云港市",
    "淮安市",
    "盐城市",
    "扬州市",
    "镇江市",
    "泰州市",
    "宿迁市",
)

# How many candidates each city gets: 4 each, plus one more for the eight largest (60 in all).
_EXTRA_SEAT: frozenset[str] = frozenset(
    {"南京市", "无锡市", "徐州市", "常州市", "苏州市", "南通市", "扬州市", "泰州市"}
)

# Industries that are plausible for each city (traditional crafts only where there is one).
_CITY_INDUSTRIES: dict[str, tuple[str, ...]] = {
    "南京市": ("电子信息", "轨道交通", "传统工艺", "化工新材料", "电力能源", "汽车制造"),
    "无锡市": ("装备制造", "电子信息", "传统工艺", "生物医药", "纺织服装"),
    "徐州市": ("装备制造", "建筑工程", "电力能源", "传统工艺", "交通运输"),
    "常州市": ("轨道交通", "装备制造", "传统工艺", "电力能源", "汽车制造"),
    "苏州市": ("电子信息", "传统工艺", "纺织服装", "装备制造", "生物医药"),
    "南通市": ("船舶海工", "建筑工程", "传统工艺", "纺织服装"),
    "连云港市": ("生物医药", "交通运输", "化工新材料", "船舶海工"),
    "淮安市": ("化工新材料", "电子信息", "交通运输", "建筑工程"),
    "盐城市": ("汽车制造", "电力能源", "纺织服装", "建筑工程"),
    "扬州市": ("船舶海工", "传统工艺", "汽车制造", "建筑工程"),
    "镇江市": ("船舶海工", "化工新材料", "电力能源", "装备制造"),
    "泰州市": ("生物医药", "船舶海工", "电力能源", "装备制造"),
    "宿迁市": ("纺织服装", "电子信息", "建筑工程", "交通运输"),
}

# Fictional names (姓+名), 40 men and 20 women.
_MEN: tuple[str, ...] = (
    "陈立峰", "周海川", "吴俊杰", "徐振栋", "孙振禾", "朱永兴", "胡继明", "郭成钢",
    "何文斌", "高建华", "林泽宇", "罗志远", "梁宏伟", "宋德胜", "郑明远", "谢长青",
    "韩卫东", "唐明辉", "冯启航", "于海波", "董兆丰", "肖景瑞", "程鹏飞", "曹永康",
    "袁立新", "邓家豪", "许文博", "傅国强", "沈浩然", "曾庆余", "彭志勇", "吕鸿飞",
    "蒋春雷", "蔡宝林", "贾书成", "丁汉林", "魏振华", "薛晓军", "任斌", "严骏",
)  # fmt: skip
_WOMEN: tuple[str, ...] = (
    "张秀兰", "李慧敏", "刘静怡", "黄雅琴", "杨晓燕", "赵丽萍", "马春梅", "钱玉芬",
    "陆婉清", "顾红霞", "姚佳", "金淑芳", "汪若兰", "夏文娟", "方小雨", "殷素琴",
    "卢晶", "秦雪梅", "邹慧", "范玲",
)  # fmt: skip

# Invented two-character brand names for fictional employers.
_BRAND_FIRST = "恒启澄嘉拓瑞博钧锦越宸峻湛晟禾凯弘铭睿昊"
_BRAND_SECOND = "川衡远泓岳程帆源辰舟瀚诚宇阳峰"


# NamedTuple rather than dataclass: the module must also load via spec_from_file_location
# without being registered in sys.modules.
class Specialty(NamedTuple):
    """One occupation with fragments that fit it: (problem, method, metric) triples and so on."""

    occupation: str
    site: str
    skill: str
    projects: tuple[str, ...]
    fixes: tuple[tuple[str, str, str], ...]
    nicknames: tuple[str, ...]
    traits: tuple[str, ...]
    employers: tuple[str, ...] = ()  # employer name suffixes; empty: the trade's


class Trade(NamedTuple):
    """One industrial sector."""

    competition: str
    employer_suffixes: tuple[str, ...]
    specialties: tuple[Specialty, ...]


class Craft(NamedTuple):
    """One traditional craft tied to its home city."""

    occupation: str
    craft: str
    technique: str
    employer_suffix: str


_S = Specialty
_TRADES: dict[str, Trade] = {
    "装备制造": Trade(
        "全国机械行业职业技能竞赛",
        ("精密机械有限公司", "重型装备有限公司", "数控机床有限公司"),
        (
            _S(
                "数控车工",
                "机加工车间",
                "高精度回转零件加工",
                ("大型盾构机主轴承", "核电主泵零部件", "航空发动机机匣"),
                (
                    ("薄壁零件加工变形", "低应力装夹法", "产品一次交检合格率"),
                    ("难加工材料刀具磨损过快", "分层对称切削法", "刀具使用寿命"),
                ),
                ("精度守护者", "微米级工匠"),
                ("练就了误差不超过0.002毫米的手上功夫", "能凭切屑颜色和声音判断刀具状态"),
            ),
            _S(
                "装配钳工",
                "总装车间",
                "大型设备精密装配",
                ("风电齿轮箱", "高档数控机床主轴", "大型压缩机组"),
                (
                    ("精密主轴装配精度不稳定", "刮研配磨一体化工艺", "装配精度合格率"),
                    ("大型箱体孔系同轴度超差", "三点定位找正法", "装配效率"),
                ),
                ("车间老法师",),
                ("凭一把刮刀把配合面精度做到了微米级", "能凭声音判断设备的运行状态"),
            ),
            _S(
                "数控铣工",
                "机加工车间",
                "复杂曲面零件加工",
                ("航空结构件", "汽轮机叶片", "精密模具型腔"),
                (
                    ("复杂曲面加工振纹", "变参数顺铣加工法", "表面质量合格率"),
                    ("多工序装夹累积误差", "一次装夹多面加工法", "加工效率"),
                ),
                ("曲面雕刻师", "精度守护者"),
                ("把图纸上的极限公差变成了车间里的日常标准",),
            ),
            _S(
                "工具钳工",
                "模具车间",
                "精密模具制造",
                ("汽车覆盖件模具", "精密冲压模具", "注塑模具"),
                (
                    ("精密模具配合间隙难以保证", "研配间隙分级控制法", "模具一次试模成功率"),
                    ("模具寿命偏短", "镶件快换结构改进法", "模具使用寿命"),
                ),
                ("模具医生",),
                ("经手的精密模具远销海内外", "把一副副模具打磨得严丝合缝"),
            ),
        ),
    ),
    "电子信息": Trade(
        "全国电子信息行业职业技能竞赛",
        ("微电子有限公司", "电子科技有限公司", "半导体有限公司"),
        (
            _S(
                "电子设备装接工",
                "电子装联车间",
                "精密电子装联",
                ("卫星通信终端", "医疗影像设备电路板", "车载雷达模块"),
                (
                    ("微小焊点虚焊率偏高", "阶梯控温回流焊工艺", "一次直通率"),
                    ("高密度电路板返修", "局部热风返修法", "返修成功率"),
                ),
                ("焊点神枪手", "指尖上的工匠"),
                ("能在显微镜下完成头发丝粗细的引线焊接", "把手工装联做到了机器般的稳定"),
                ("电子科技有限公司", "电子设备有限公司"),
            ),
            _S(
                "半导体芯片制造工",
                "洁净车间",
                "芯片封装测试",
                ("车规级功率模块", "存储芯片封装线", "传感器芯片"),
                (
                    ("晶圆划片崩边", "低应力划片工艺", "产品良率"),
                    ("引线键合强度不稳定", "键合参数窗口优化法", "键合良率"),
                ),
                ("芯片绣花匠",),
                ("让一颗颗芯片在毫厘之间做到零缺陷",),
                ("微电子有限公司", "半导体有限公司"),
            ),
            _S(
                "电子仪器仪表装调工",
                "调试车间",
                "精密仪器装配调试",
                ("5G基站射频组件", "高端示波器", "北斗导航终端"),
                (
                    ("射频组件调试一致性差", "分段对称调谐法", "调试效率"),
                    ("整机噪声指标超标", "屏蔽接地优化工艺", "整机合格率"),
                ),
                ("调试神手",),
                ("能从示波器波形的细微变化里找出故障根源",),
                ("电子科技有限公司", "仪器仪表有限公司"),
            ),
        ),
    ),
    "化工新材料": Trade(
        "全国石油和化工行业职业技能竞赛",
        ("新材料股份有限公司", "化工有限公司", "新材料科技有限公司"),
        (
            _S(
                "化工总控工",
                "生产装置",
                "化工装置操作",
                ("高性能碳纤维生产线", "高端聚烯烃装置", "锂电池隔膜生产线"),
                (
                    ("反应釜温度波动大", "分段升温精准控制法", "产品优级品率"),
                    ("装置非计划停车频繁", "装置巡检五步法", "装置连续运行周期"),
                ),
                ("装置活地图",),
                ("闭着眼睛也能说出装置上每一条管线的走向", "常年守在装置旁确保安全生产零事故"),
            ),
            _S(
                "化学检验员",
                "质检中心",
                "新材料质量检测",
                ("电子级化学品提纯装置", "高性能工程塑料生产线", "光伏新材料产业化"),
                (
                    ("痕量杂质检测结果不稳定", "梯度富集检测法", "检测准确率"),
                    ("检测周期过长", "多组分同步分析法", "检测效率"),
                ),
                ("质量把关人",),
                ("把每一批产品的纯度都控制在小数点后四位",),
            ),
            _S(
                "防腐蚀工",
                "生产装置",
                "装置防腐与维护",
                ("沿海化工园区储罐群", "氯碱装置改造", "高温反应装置大修"),
                (
                    ("设备腐蚀泄漏", "防腐涂层快速修复法", "设备完好率"),
                    ("高温管道防腐层易脱落", "分层喷涂固化工艺", "防腐层使用寿命"),
                ),
                ("设备保健医生",),
                ("让一台台化工设备远离腐蚀隐患",),
            ),
        ),
    ),
    "建筑工程": Trade(
        "全国建设行业职业技能竞赛",
        ("建设集团有限公司", "建筑安装工程有限公司", "建工集团有限公司"),
        (
            _S(
                "钢筋工",
                "建筑工地",
                "复杂钢筋工程施工",
                ("城市地标超高层建筑", "地铁车站主体结构", "大型医院综合楼"),
                (
                    ("异形构件钢筋绑扎", "钢筋骨架预制拼装工艺", "施工效率"),
                    ("密集节点钢筋穿插", "节点钢筋三维排布法", "一次验收合格率"),
                ),
                ("钢筋裁缝",),
                ("把密如蛛网的钢筋绑扎得横平竖直",),
            ),
            _S(
                "焊工",
                "建筑工地",
                "复杂钢结构焊接",
                ("大型体育场馆钢结构屋盖", "跨江大桥钢箱梁", "会展中心钢结构"),
                (
                    ("厚钢板焊接变形", "分区对称焊接法", "焊缝一次合格率"),
                    ("高空仰焊质量不稳定", "多层多道控温焊接法", "焊接效率"),
                ),
                ("高空绣花匠",),
                ("在数百米高空把焊缝做成了艺术品",),
            ),
            _S(
                "工程测量员",
                "建筑工地",
                "大型工程测量",
                ("城市地标超高层建筑", "跨江大桥引桥", "大型体育场馆钢结构屋盖"),
                (
                    ("超高层结构垂直度控制", "激光投点测量法", "测量效率"),
                    ("大跨度钢结构安装定位", "三维坐标实时复测法", "构件安装精度"),
                ),
                ("工地定海神针",),
                ("在数百米高空把误差控制在毫米之内", "参与建设的工程多次获得鲁班奖"),
            ),
            _S(
                "砌筑工",
                "建筑工地",
                "清水墙与古建砌筑",
                ("历史街区修缮", "园林古建复建", "城市文化中心"),
                (
                    ("清水墙灰缝不匀", "挂线分皮砌筑法", "一次验收合格率"),
                    ("古建筑修缮砖件匹配难", "旧砖复用分级法", "施工效率"),
                ),
                ("砌墙状元",),
                ("砌出的墙面平整得像一面镜子",),
            ),
        ),
    ),
    "交通运输": Trade(
        "全国交通运输行业职业技能大赛",
        ("交通运输集团有限公司", "港务集团有限公司", "路桥工程有限公司"),
        (
            _S(
                "桥隧工",
                "桥梁养护一线",
                "大型桥梁养护",
                ("长江公路大桥检修", "跨海大桥养护", "城市快速路隧道改造"),
                (
                    ("桥梁伸缩缝病害", "伸缩缝快速更换工法", "养护作业效率"),
                    ("斜拉索锈蚀隐患排查", "拉索逐段检测法", "病害检出率"),
                ),
                ("大桥守护人",),
                ("在几十米高的桥塔上练就了过硬本领",),
                ("路桥工程有限公司", "交通建设集团有限公司"),
            ),
            _S(
                "起重装卸机械操作工",
                "港区码头",
                "集装箱装卸作业",
                ("集装箱码头自动化改造", "港区散货泊位扩建", "内河集装箱港区建设"),
                (
                    ("集装箱装卸效率瓶颈", "精准一次对位操作法", "装卸效率"),
                    ("大件货物吊装风险高", "双机抬吊协同作业法", "大件吊装效率"),
                ),
                ("码头吊装状元",),
                ("让繁忙的码头作业又快又稳",),
                ("港务集团有限公司", "集装箱码头有限公司"),
            ),
            _S(
                "公路养护工",
                "高速公路养护一线",
                "高速公路养护",
                ("高速公路改扩建", "国省干线大中修", "农村公路提档升级"),
                (
                    ("路面早期破损", "就地热再生修补法", "养护质量合格率"),
                    ("夜间养护作业安全风险高", "移动式安全防护作业法", "作业效率"),
                ),
                ("道路医生",),
                ("守护着每天数万车次的通行安全",),
                ("路桥工程有限公司", "公路养护工程有限公司"),
            ),
            _S(
                "汽车维修工",
                "维修车间",
                "营运车辆维修",
                ("城市公交新能源化", "长途客运车辆技术升级", "应急运输保障"),
                (
                    ("大型客车疑难故障诊断", "故障四步诊断法", "一次修复率"),
                    ("新能源客车电控故障排查", "电控故障树排查法", "维修效率"),
                ),
                ("汽车神医",),
                ("听一听发动机声音就能判断故障所在",),
                ("公共交通集团有限公司", "客运集团有限公司"),
            ),
        ),
    ),
    "电力能源": Trade(
        "全国电力行业职业技能竞赛",
        ("电力工程有限公司", "输变电工程有限公司", "新能源有限公司"),
        (
            _S(
                "送配电线路工",
                "配电线路一线",
                "配网带电作业",
                ("城市配电网改造", "特高压输电线路工程", "乡村电网升级"),
                (
                    ("配网带电作业安全风险高", "绝缘杆作业三步法", "带电作业效率"),
                    ("线路故障抢修耗时长", "模块化抢修作业法", "抢修效率"),
                ),
                ("带电作业尖兵", "电网特种兵"),
                (
                    "常年奔走在高压线路上为千家万户守护光明",
                    "能在不停电的情况下完成高难度检修作业",
                ),
                ("电力工程有限公司", "输变电工程有限公司"),
            ),
            _S(
                "继电保护员",
                "变电站",
                "继电保护调试",
                ("特高压输变电工程", "智能变电站改造", "城市核心区供电保障"),
                (
                    ("继电保护装置误动", "保护定值双核对工作法", "校验效率"),
                    ("智能变电站调试周期长", "二次回路一键校验法", "调试效率"),
                ),
                ("电网守门员",),
                ("把每一套保护装置都调校得分毫不差",),
                ("电力工程有限公司", "输变电工程有限公司"),
            ),
            _S(
                "电力电缆安装运维工",
                "电缆运维一线",
                "高压电缆运维",
                ("城市电缆隧道工程", "海上风电并网工程", "城市配电网改造"),
                (
                    ("电缆故障精准定位", "声磁同步故障定位法", "故障定位准确率"),
                    ("电缆接头制作质量不稳定", "接头制作标准化工艺", "接头一次合格率"),
                ),
                ("电缆神探",),
                ("把每一次抢修都当成对群众的承诺",),
                ("电力工程有限公司", "电缆工程有限公司"),
            ),
            _S(
                "电工",
                "风电场",
                "风电机组电气检修",
                ("海上风电场建设", "陆上风电场技改", "分布式光伏电站"),
                (
                    ("风机齿轮箱异常振动", "振动频谱诊断法", "故障诊断准确率"),
                    ("海上风机检修窗口期短", "检修备件预置作业法", "检修效率"),
                ),
                ("风电场守护者",),
                ("常年在百米高的风机舱里排除故障",),
                ("新能源有限公司", "风电运维有限公司"),
            ),
        ),
    ),
    "纺织服装": Trade(
        "全国纺织行业职业技能竞赛",
        ("纺织集团有限公司", "服饰有限公司", "丝绸有限公司"),
        (
            _S(
                "纺纱工",
                "纺纱车间",
                "高支纱纺制",
                ("智能纺纱车间改造", "高支精梳纱开发", "功能性纱线研发"),
                (
                    ("高支纱断头率高", "巡回五定操作法", "生产效率"),
                    ("细纱接头质量不稳定", "断头快速接头法", "一等品率"),
                ),
                ("车间接头王",),
                ("一双巧手能在数秒内完成断纱接头",),
                ("纺织集团有限公司", "棉纺有限公司"),
            ),
            _S(
                "织布工",
                "织造车间",
                "无梭织机操作",
                ("功能性面料研发", "出口高档家纺", "高密织物开发"),
                (
                    ("织物疵点难以控制", "布面疵点预防操作法", "一等品率"),
                    ("高密织物开口不清", "织机上机参数优化法", "织造效率"),
                ),
                ("纺织巧手",),
                ("对布面上细微的疵点过目不忘",),
                ("纺织集团有限公司", "丝绸有限公司"),
            ),
            _S(
                "服装制版师",
                "技术部",
                "服装制版",
                ("高端西服定制生产线", "职业装批量定制", "自主品牌女装开发"),
                (
                    ("版型难以适配不同体型", "三维校版法", "版型一次通过率"),
                    ("高档西服袖型不服帖", "袖山吃势分配法", "成衣合格率"),
                ),
                ("版型魔术师",),
                ("让每一件成衣都穿得合身又挺括",),
                ("服饰有限公司", "制衣有限公司"),
            ),
            _S(
                "染色工",
                "染色车间",
                "面料染色",
                ("功能性面料研发", "印染车间节能改造", "出口高档家纺"),
                (
                    ("批次色差返工多", "小样大货一次对色法", "一次对色成功率"),
                    ("染色用水量大", "小浴比节水染色工艺", "水重复利用率"),
                ),
                ("调色能手",),
                ("一眼就能分辨出细微的色差",),
                ("印染有限公司", "纺织集团有限公司"),
            ),
        ),
    ),
    "生物医药": Trade(
        "全国医药行业特有职业技能竞赛",
        ("药业有限公司", "生物制药有限公司", "医药科技有限公司"),
        (
            _S(
                "药物制剂工",
                "制剂车间",
                "无菌制剂生产",
                ("无菌注射剂生产线", "创新药产业化", "冻干粉针车间"),
                (
                    ("冻干产品外观塌陷", "分段冻干曲线优化法", "批次合格率"),
                    ("注射剂可见异物偶发", "灌装环境动态监控法", "产品合格率"),
                ),
                ("制药守门人",),
                ("在无菌车间里把标准操作做到分毫不差",),
            ),
            _S(
                "化学合成制药工",
                "合成车间",
                "原料药合成",
                ("创新药产业化", "原料药绿色工艺改造", "抗肿瘤药物中试"),
                (
                    ("合成反应收率偏低", "低温定向结晶工艺", "产品收率"),
                    ("溶剂消耗量大", "溶剂套用回收工艺", "溶剂回收率"),
                ),
                ("车间质量卫士",),
                ("坚守每一粒药都关乎生命的信条",),
            ),
            _S(
                "生化药品制造工",
                "提取纯化车间",
                "生化药品提取纯化",
                ("疫苗原液车间", "生物酶制剂产业化", "多肽药物生产线"),
                (
                    ("酶制剂活性批间差异大", "关键参数双人复核法", "产品活性合格率"),
                    ("纯化工序耗时长", "层析纯化连续化工艺", "生产效率"),
                ),
                ("质量卫士",),
                ("把药品质量看得比什么都重",),
            ),
            _S(
                "中药炮制工",
                "饮片车间",
                "中药饮片炮制",
                ("中药配方颗粒", "道地药材饮片生产线", "古法炮制工艺传承"),
                (
                    ("炮制火候难以量化", "火候量化控制法", "饮片合格率"),
                    ("传统炮制效率低", "炮制工艺参数化改造", "生产效率"),
                ),
                ("炮制老药工",),
                ("一眼就能看出饮片的火候是否到位",),
                ("中药饮片有限公司", "药业有限公司"),
            ),
        ),
    ),
    "轨道交通": Trade(
        "全国城市轨道交通行业职业技能竞赛",
        ("轨道交通装备有限公司", "城市轨道交通运营有限公司", "轨道交通工程有限公司"),
        (
            _S(
                "接触网工",
                "接触网检修一线",
                "接触网检修",
                ("城市地铁新线开通", "城际铁路建设", "高速铁路联调联试"),
                (
                    ("弓网故障频发", "一杆一档检测法", "故障处置效率"),
                    ("接触网检修天窗时间短", "模块化预配检修法", "检修效率"),
                ),
                ("地铁守夜人",),
                ("多年坚持夜间天窗作业守护列车安全运行",),
                ("城市轨道交通运营有限公司", "轨道交通工程有限公司"),
            ),
            _S(
                "轨道交通信号工",
                "信号设备维护一线",
                "信号设备维护",
                ("城市地铁新线开通", "信号系统升级改造", "城际铁路建设"),
                (
                    ("信号设备隐蔽故障排查", "信号故障逆向排查法", "故障处置效率"),
                    ("道岔转辙设备故障多发", "转辙机预防性维护法", "设备可靠性"),
                ),
                ("信号神探",),
                ("为城市轨道交通安全运营筑起坚实防线",),
                ("城市轨道交通运营有限公司",),
            ),
            _S(
                "铁路车辆制修工",
                "车辆检修基地",
                "转向架检修",
                ("地铁车辆架修", "动车组高级修", "城轨车辆国产化"),
                (
                    ("转向架裂纹检测漏检", "三看一听检修法", "缺陷检出率"),
                    ("车辆架修周期长", "部件流水化检修法", "检修效率"),
                ),
                ("铁路听诊器",),
                ("能从细微声响里听出设备隐患",),
                ("轨道交通装备有限公司", "城市轨道交通运营有限公司"),
            ),
            _S(
                "轨道列车司机",
                "列车驾驶岗位",
                "列车驾驶",
                ("城市地铁新线开通", "全自动运行线路试运行", "城际铁路建设"),
                (
                    ("列车车门故障应急处置", "车门故障快速处置法", "应急处置效率"),
                    ("列车停车精度不稳定", "精准对标操纵法", "停车对标精度"),
                ),
                ("安全行车标兵",),
                ("安全驾驶列车数十万公里无责任事故",),
                ("城市轨道交通运营有限公司",),
            ),
        ),
    ),
    "船舶海工": Trade(
        "全国船舶工业职业技能竞赛",
        ("船舶重工有限公司", "海洋工程装备有限公司", "造船有限公司"),
        (
            _S(
                "船舶电焊工",
                "船坞",
                "特种钢焊接",
                ("大型液化天然气运输船", "深海钻井平台", "极地科考船"),
                (
                    ("殷瓦钢薄板焊接", "稳弧摆动焊接法", "焊缝一次探伤合格率"),
                    ("低温钢焊缝裂纹", "窄间隙焊接工艺", "焊接效率"),
                ),
                ("焊花状元",),
                ("在狭小舱室里焊出一条条零缺陷焊缝",),
            ),
            _S(
                "船体装配工",
                "船台",
                "分段精度建造",
                ("超大型集装箱船", "大型散货船", "海上风电安装船"),
                (
                    ("分段合拢精度控制", "分段无余量合拢工艺", "分段建造效率"),
                    ("曲面外板装配变形", "胎架快速调整法", "装配精度合格率"),
                ),
                ("钢铁裁缝",),
                ("参与建造的巨轮已驶向世界各地",),
            ),
            _S(
                "船舶管系工",
                "船坞",
                "船舶管系安装",
                ("大型液化天然气运输船", "汽车滚装船", "海上风电安装船"),
                (
                    ("复杂管系现场校管", "管系三维快速校管法", "管系安装效率"),
                    ("管路法兰精确对中", "激光对中安装法", "一次密性试验合格率"),
                ),
                ("管系活地图",),
                ("把大国重器的质量装进每一道工序",),
            ),
        ),
    ),
    "汽车制造": Trade(
        "全国汽车行业职业技能大赛",
        ("汽车有限公司", "汽车零部件有限公司", "新能源汽车有限公司"),
        (
            _S(
                "汽车装调工",
                "总装车间",
                "整车装调",
                ("新能源汽车生产线", "智能网联汽车试制", "动力电池包装配线"),
                (
                    ("整车异响源头排查", "异响分区定位法", "整车一次下线合格率"),
                    ("电池包装配一致性差", "电池包装配防错工艺", "装配效率"),
                ),
                ("整车听诊师",),
                ("仅凭耳朵就能找出整车异响的源头",),
            ),
            _S(
                "涂装工",
                "涂装车间",
                "车身涂装",
                ("涂装线智能化改造", "新能源汽车生产线", "个性化车漆开发"),
                (
                    ("涂装漆面缺陷", "涂装三度控制法", "漆面一次合格率"),
                    ("涂料损耗大", "静电旋杯参数优化法", "涂料利用率"),
                ),
                ("车身美容师",),
                ("让每一台车身都拥有镜面般的光泽",),
            ),
            _S(
                "焊工",
                "焊装车间",
                "车身焊装",
                ("车身焊装线改造", "铝合金车身试制", "新能源汽车生产线"),
                (
                    ("车身焊点质量不稳定", "焊装夹具快速调校法", "焊点合格率"),
                    ("铝合金车身焊接变形", "分段跳焊控形法", "车身尺寸合格率"),
                ),
                ("焊装金手指",),
                ("把毫米级的焊装精度变成了生产线上的习惯",),
            ),
        ),
    ),
}

_CRAFTS: dict[str, tuple[Craft, ...]] = {
    "南京市": (
        Craft("云锦织造技艺传承人", "云锦", "妆花挖花盘织", "云锦研究所有限公司"),
        Craft("金箔锻制工艺师", "金箔", "乌金纸制作与手工锻打", "金箔工艺品有限公司"),
    ),
    "无锡市": (
        Craft("紫砂工艺师", "紫砂壶", "泥片镶接成型", "紫砂陶艺有限公司"),
        Craft("惠山泥人彩塑艺人", "惠山泥人", "手捏戏文与彩绘开相", "泥塑工艺有限公司"),
    ),
    "徐州市": (
        Craft("香包制作技艺传承人", "徐州香包", "立体绣缝与填充造型", "民间工艺品有限公司"),
        Craft("剪纸艺人", "徐州剪纸", "阴阳刻结合", "剪纸艺术有限公司"),
    ),
    "常州市": (
        Craft("梳篦制作技艺传承人", "常州梳篦", "镂空雕刻与烫画", "梳篦工艺有限公司"),
        Craft("乱针绣工艺师", "乱针绣", "交叉乱针与多层加色", "刺绣艺术有限公司"),
    ),
    "苏州市": (
        Craft("苏绣技艺传承人", "苏绣", "双面异色绣", "刺绣艺术有限公司"),
        Craft("核雕工艺师", "核雕", "橄榄核微雕", "工艺美术有限公司"),
        Craft("缂丝织造技艺传承人", "缂丝", "通经断纬", "缂丝艺术有限公司"),
    ),
    "南通市": (
        Craft("蓝印花布印染技艺传承人", "蓝印花布", "刮浆防染与靛蓝染色", "蓝印花布有限公司"),
        Craft("仿真绣工艺师", "仿真绣", "散套针与施针", "刺绣艺术有限公司"),
    ),
    "扬州市": (
        Craft("漆器髹饰工艺师", "扬州漆器", "点螺镶嵌", "漆器工艺有限公司"),
        Craft("玉雕工艺师", "扬州玉雕", "山子雕", "玉器工艺有限公司"),
    ),
}

_LEVELS = ("高级技师", "特级技师", "首席技师")
_TITLES = (
    "江苏省技术能手",
    "全国技术能手",
    "江苏省五一劳动奖章",
    "全国五一劳动奖章",
    "江苏省劳动模范",
    "江苏省青年岗位能手",
)
_RANKS = ("一等奖", "金奖", "第一名", "二等奖")

_CRAFT_TITLES = (
    "江苏省工艺美术大师",
    "省级非物质文化遗产代表性传承人",
    "江苏省技术能手",
    "江苏省乡土人才",
)
_CRAFT_AWARDS = (
    "中国工艺美术精品博览会金奖",
    "江苏省工艺美术精品大奖赛金奖",
    "全国民间工艺美术作品展特等奖",
)
_CRAFT_WORKS = (
    "江南春色", "运河长歌", "锦绣江苏", "清风徐来", "百鸟朝凤",
    "山水清音", "水乡记忆", "岁寒三友", "花开盛世", "烟雨楼台",
)  # fmt: skip
_CRAFT_INNOVATIONS = ("现代构图", "光影透视", "当代设计语言", "数字化纹样设计")
_CRAFT_COLLECTORS = ("省级博物馆", "多家文博机构", "国家级工艺美术馆")
_CRAFT_TRAITS = (
    "让千年古艺焕发出新的时代光彩",
    "坚持一针一线、一刀一刻的手工传承",
    "把传统纹样融入当代生活美学",
    "在方寸之间守护着千年文脉",
)

_TRADE_SUMMARIES = (
    "{occupation}出身，扎根{site}{years}年，{trait}，被同事们称为“{nickname}”。",
    "一位深耕{skill}{years}年的{occupation}，{trait}，是企业公认的技术带头人。",
    "{years}年如一日坚守{site}，{trait}，被誉为“{nickname}”。",
)
_TRADE_OPENINGS = (
    "{name}{years}年前以学徒身份进入{employer}，从最基础的岗位干起，如今已是企业{level}。",
    "参加工作{years}年来，{name}先后参与{project}、{project2}等重点项目，始终坚守在{site}。",
    "{name}毕业于当地一所技工学校，{years}年来扎根{site}，从普通{occupation}成长为{level}。",
)
_TRADE_TECHNIQUES = (
    "针对{problem}的难题，{he}反复试验{trials}余次，总结出“{method}”，使{metric}提高{pct}%。",
    "{he}牵头攻克{problem}难题，独创的“{method}”使{metric}提升{pct}%，"
    "每年为企业节约成本{money}万元。",
    "在{project}项目中，{he}带领班组攻克{problem}难题，首创“{method}”并在行业内推广。",
)
_TRADE_PATENTS = (
    "{he}累计获得国家发明专利{inventions}项、实用新型专利{utilities}项，"
    "参与制定行业标准{standards}项。",
    "近年来，{he}主持完成技术革新项目{innovations}项，其中{inventions}项获得国家发明专利授权。",
    "{he}提出的合理化建议被采纳{innovations}条，获得授权专利{inventions}项，"
    "累计创造经济效益{benefit}万元。",
)
_TRADE_APPRENTICES = (
    "依托以{name}名字命名的技能大师工作室，{he}累计带徒{apprentices}名，"
    "其中{masters}人成长为高级技师。",
    "{he}坚持“传帮带”，编写培训教材{books}册，所带徒弟中已有{masters}人在省级以上技能竞赛中获奖。",
    "{he}毫无保留地把绝活传给年轻人，累计培训职工{trainees}人次，带出了一支能打硬仗的技术团队。",
)
_TRADE_HONOR_LINES = (
    "{he}曾获{competition}{rank}，先后荣获{honor}、{honor2}等称号。",
    "{he}先后荣获{honor}、{honor2}称号，并获评“{city_short}工匠”。",
    "{he}在{competition}中摘得{rank}，被授予{honor}称号。",
)

_CRAFT_SUMMARIES = (
    "从艺{years}年潜心钻研{craft}技艺，{trait}，是当地{craft}行业的领军人物。",
    "{years}年专注{craft}创作的{occupation}，{trait}。",
)
_CRAFT_OPENINGS = (
    "{name}从艺{years}年，早年拜当地老艺人为师，系统掌握了{craft}{technique}等传统技法。",
    "{name}自幼受家庭熏陶，{years}年来潜心钻研{craft}，对{technique}等核心技艺有独到领悟。",
)
_CRAFT_TECHNIQUES = (
    "{he}在传承古法的基础上大胆创新，将{innovation}融入{craft}创作，"
    "代表作《{work}》被{collector}收藏。",
    "为破解{craft}传统工艺效率低、易失传的难题，{he}反复试验{trials}余次，改良工具{tools}件，"
    "使作品成品率提高{pct}%。",
)
_CRAFT_RECORDS = (
    "{he}整理出版技艺专著{books}部，参与{craft}非遗保护与记录工作，复原失传技法{restored}项。",
    "{he}累计创作作品{works}余件，其中{inventions}项工艺获得国家专利授权。",
)
_CRAFT_APPRENTICES = (
    "{he}创办{craft}传习工作室，累计培养学徒{apprentices}名，并走进{schools}所中小学开设非遗课堂。",
    "为让老手艺后继有人，{he}先后带徒{apprentices}名，其中{masters}人已能独立完成高难度作品。",
)
_CRAFT_HONOR_LINES = (
    "{he}的作品曾获{award}，本人先后获评{honor}、{honor2}。",
    "{he}先后获评{honor}、{honor2}，并获评“{city_short}工匠”。",
)

_SUMMARY_LEN = (30, 60)
_DEEDS_LEN = (150, 300)


def _seats(rng: random.Random) -> list[str]:
    """City of each candidate in ballot order: every city 4 or 5 times, shuffled."""
    seats: list[str] = []
    for city in CITIES:
        seats.extend([city] * (5 if city in _EXTRA_SEAT else 4))
    rng.shuffle(seats)
    return seats


def _names(rng: random.Random) -> list[tuple[str, str]]:
    """(name, gender) in ballot order."""
    people = [(n, "男") for n in _MEN] + [(n, "女") for n in _WOMEN]
    rng.shuffle(people)
    return people


def _brands(rng: random.Random, count: int) -> list[str]:
    pairs = [a + b for a in _BRAND_FIRST for b in _BRAND_SECOND if a != b]
    return rng.sample(pairs, count)


def _compose(
    rng: random.Random,
    ctx: dict[str, str | int],
    groups: tuple[tuple[str, ...], ...],
    optional: tuple[tuple[str, ...], ...],
    bounds: tuple[int, int],
) -> str:
    """Pick one template from each group plus some optional groups until the length fits."""
    while True:
        picked = [rng.choice(g) for g in groups]
        extra = rng.sample(optional, rng.randint(1, len(optional)))
        order = [o for o in optional if o in extra]  # keep the natural order of topics
        picked += [rng.choice(g) for g in order]
        text = "".join(t.format(**ctx) for t in picked)
        if bounds[0] <= len(text) <= bounds[1]:
            return text


def _summary(
    rng: random.Random, ctx: dict[str, str | int], templates: tuple[str, ...], used: set[str]
) -> str:
    """One sentence of the right length, preferring one no other candidate has."""
    fitting = [
        text
        for text in (t.format(**ctx) for t in rng.sample(templates, len(templates)))
        if _SUMMARY_LEN[0] <= len(text) <= _SUMMARY_LEN[1]
    ]
    text = next((t for t in fitting if t not in used), fitting[0])
    used.add(text)
    return text


def _numbers(rng: random.Random) -> dict[str, str | int]:
    apprentices = rng.randint(12, 60)
    money = rng.choice((80, 120, 180, 260, 350, 500, 800))
    innovations = rng.randint(15, 60)
    return {
        "years": rng.randint(12, 32),
        "trials": rng.choice((50, 80, 100, 200, 300)),
        "pct": rng.randint(15, 60),
        "money": money,
        "benefit": money * rng.randint(4, 9),
        "inventions": rng.randint(2, min(12, innovations // 3)),
        "utilities": rng.randint(5, 30),
        "standards": rng.randint(1, 4),
        "innovations": innovations,
        "apprentices": apprentices,
        "masters": rng.randint(3, apprentices // 3),
        "books": rng.randint(2, 6),
        "trainees": rng.choice((600, 1200, 2000, 3000)),
        "tools": rng.randint(6, 30),
        "restored": rng.randint(2, 8),
        "works": rng.choice((100, 200, 300, 500)),
        "schools": rng.randint(5, 30),
    }


def _candidate(
    rng: random.Random,
    index: int,
    person: tuple[str, str],
    city: str,
    industry: str,
    brand: str,
    used_summaries: set[str],
) -> dict[str, object]:
    name, gender = person
    cid = f"c{index:03d}"
    city_short = city.removesuffix("市")
    honor, honor2 = rng.sample(_TITLES if industry != "传统工艺" else _CRAFT_TITLES, 2)
    ctx: dict[str, str | int] = {
        "name": name,
        "he": "他" if gender == "男" else "她",
        "city_short": city_short,
        "honor": honor,
        "honor2": honor2,
        **_numbers(rng),
    }
    if industry == "传统工艺":
        craft = rng.choice(_CRAFTS[city])
        occupation = craft.occupation
        employer = f"{city_short}{brand}{craft.employer_suffix}"
        ctx |= {
            "occupation": occupation,
            "employer": employer,
            "craft": craft.craft,
            "technique": craft.technique,
            "innovation": rng.choice(_CRAFT_INNOVATIONS),
            "work": rng.choice(_CRAFT_WORKS),
            "collector": rng.choice(_CRAFT_COLLECTORS),
            "award": rng.choice(_CRAFT_AWARDS),
            "trait": rng.choice(_CRAFT_TRAITS),
        }
        summary = _summary(rng, ctx, _CRAFT_SUMMARIES, used_summaries)
        deeds = _compose(
            rng,
            ctx,
            (_CRAFT_OPENINGS, _CRAFT_TECHNIQUES),
            (_CRAFT_RECORDS, _CRAFT_APPRENTICES, _CRAFT_HONOR_LINES),
            _DEEDS_LEN,
        )
    else:
        trade = _TRADES[industry]
        spec = rng.choice(trade.specialties)
        occupation = spec.occupation
        employer = f"{city_short}{brand}{rng.choice(spec.employers or trade.employer_suffixes)}"
        project, project2 = rng.sample(spec.projects, 2)
        problem, method, metric = rng.choice(spec.fixes)
        ctx |= {
            "occupation": occupation,
            "employer": employer,
            "site": spec.site,
            "skill": spec.skill,
            "project": project,
            "project2": project2,
            "problem": problem,
            "method": method,
            "metric": metric,
            "competition": trade.competition,
            "rank": rng.choice(_RANKS),
            "nickname": rng.choice(spec.nicknames),
            "trait": rng.choice(spec.traits),
            "level": rng.choice(_LEVELS),
        }
        summary = _summary(rng, ctx, _TRADE_SUMMARIES, used_summaries)
        deeds = _compose(
            rng,
            ctx,
            (_TRADE_OPENINGS, _TRADE_TECHNIQUES),
            (_TRADE_PATENTS, _TRADE_APPRENTICES, _TRADE_HONOR_LINES),
            _DEEDS_LEN,
        )
    return {
        "id": cid,
        "number": index,
        "name": name,
        "gender": gender,
        "region": city,
        "industry": industry,
        "employer": employer,
        "occupation": occupation,
        "summary": summary,
        "deeds": deeds,
        "photo_url": f"/static/photos/{cid}.svg",
    }


def _candidates() -> list[dict[str, object]]:
    rng = random.Random(_SEED)
    seats = _seats(rng)
    people = _names(rng)
    brands = _brands(rng, len(seats))
    # Each city walks through its own industry list from a random starting point.
    offsets = {city: rng.randrange(len(inds)) for city, inds in _CITY_INDUSTRIES.items()}
    seen: dict[str, int] = {}
    used_summaries: set[str] = set()
    out: list[dict[str, object]] = []
    for i, (city, person, brand) in enumerate(zip(seats, people, brands, strict=True)):
        k = seen.get(city, 0)
        seen[city] = k + 1
        inds = _CITY_INDUSTRIES[city]
        industry = inds[(offsets[city] + k) % len(inds)]
        out.append(_candidate(rng, i + 1, person, city, industry, brand, used_summaries))
    return out


def demo_campaign(campaign_id: str | None = None, year: int | None = None) -> dict[str, object]:
    """The demo campaign, open from 1 January to 31 December of ``year`` (default: this year).

    ``campaign_id`` defaults to ``jsgj{year}``, e.g. ``jsgj2026``.
    """
    if year is None:
        year = datetime.datetime.now(_CST).year  # the campaign's year, not the host's (UTC)
    if campaign_id is None:
        campaign_id = f"jsgj{year}"
    opens_at = datetime.datetime(year, 1, 1, 0, 0, 0, tzinfo=_CST)
    closes_at = datetime.datetime(year, 12, 31, 23, 59, 59, tzinfo=_CST)
    return {
        "id": campaign_id,
        "title": f"{year}年“江苏最美工匠”网络投票",
        "year": year,
        "timezone": "Asia/Shanghai",
        "opens_at": opens_at.isoformat(),
        "closes_at": closes_at.isoformat(),
        "status": "open",
        "show_counts": True,
        "rules": {
            "votes_per_day": 10,
            "per_candidate_per_day": 1,
            "identity": ["anonymous"],
            "challenge": "off",
            "ip_per_minute": 600,
            "ip_per_day": 20000,
        },
        "candidates": _candidates(),
    }


def main() -> None:
    """Print the demo campaign as JSON: ``python -m voting_service.demo > demo.json``."""
    print(json.dumps(demo_campaign(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
