"""Vocabularies for the demo data: names, places with real admin codes, products, texts (zh and en)."""

from __future__ import annotations

# (province, short, region, population in millions, english, [(city, city_en, district, district_en, code)])
PROVINCES: list[tuple[str, str, str, float, str, list[tuple[str, str, str, str, str]]]] = [
    ("广东省", "广东", "华南", 126.6, "Guangdong", [("深圳市", "Shenzhen", "南山区", "Nanshan", "440305"),
                                                ("广州市", "Guangzhou", "天河区", "Tianhe", "440106"),
                                                ("东莞市", "Dongguan", "南城街道", "Nancheng", "441900"),
                                                ("佛山市", "Foshan", "禅城区", "Chancheng", "440604")]),
    ("广西壮族自治区", "广西", "华南", 50.1, "Guangxi", [("南宁市", "Nanning", "青秀区", "Qingxiu", "450103"),
                                                    ("柳州市", "Liuzhou", "城中区", "Chengzhong", "450202")]),
    ("海南省", "海南", "华南", 10.1, "Hainan", [("海口市", "Haikou", "美兰区", "Meilan", "460108")]),
    ("北京市", "北京", "华北", 21.9, "Beijing", [("北京市", "Beijing", "朝阳区", "Chaoyang", "110105"),
                                             ("北京市", "Beijing", "海淀区", "Haidian", "110108")]),
    ("天津市", "天津", "华北", 13.9, "Tianjin", [("天津市", "Tianjin", "和平区", "Heping", "120101")]),
    ("河北省", "河北", "华北", 74.6, "Hebei", [("石家庄市", "Shijiazhuang", "长安区", "Chang'an", "130102"),
                                           ("保定市", "Baoding", "竞秀区", "Jingxiu", "130602")]),
    ("山西省", "山西", "华北", 34.9, "Shanxi", [("太原市", "Taiyuan", "小店区", "Xiaodian", "140105")]),
    ("内蒙古自治区", "内蒙古", "华北", 24.0, "Inner Mongolia", [("呼和浩特市", "Hohhot", "新城区", "Xincheng", "150102")]),
    ("上海市", "上海", "华东", 24.9, "Shanghai", [("上海市", "Shanghai", "浦东新区", "Pudong", "310115"),
                                              ("上海市", "Shanghai", "徐汇区", "Xuhui", "310104")]),
    ("江苏省", "江苏", "华东", 85.1, "Jiangsu", [("南京市", "Nanjing", "鼓楼区", "Gulou", "320106"),
                                             ("苏州市", "Suzhou", "姑苏区", "Gusu", "320508")]),
    ("浙江省", "浙江", "华东", 65.4, "Zhejiang", [("杭州市", "Hangzhou", "西湖区", "Xihu", "330106"),
                                              ("宁波市", "Ningbo", "鄞州区", "Yinzhou", "330212")]),
    ("安徽省", "安徽", "华东", 61.0, "Anhui", [("合肥市", "Hefei", "蜀山区", "Shushan", "340104")]),
    ("福建省", "福建", "华东", 41.5, "Fujian", [("福州市", "Fuzhou", "鼓楼区", "Gulou", "350102"),
                                            ("厦门市", "Xiamen", "思明区", "Siming", "350203")]),
    ("江西省", "江西", "华东", 45.2, "Jiangxi", [("南昌市", "Nanchang", "东湖区", "Donghu", "360102")]),
    ("山东省", "山东", "华东", 101.5, "Shandong", [("济南市", "Jinan", "历下区", "Lixia", "370102"),
                                               ("青岛市", "Qingdao", "市南区", "Shinan", "370202")]),
    ("河南省", "河南", "华中", 99.4, "Henan", [("郑州市", "Zhengzhou", "金水区", "Jinshui", "410105")]),
    ("湖北省", "湖北", "华中", 57.8, "Hubei", [("武汉市", "Wuhan", "武昌区", "Wuchang", "420106")]),
    ("湖南省", "湖南", "华中", 66.4, "Hunan", [("长沙市", "Changsha", "岳麓区", "Yuelu", "430104")]),
    ("重庆市", "重庆", "西南", 32.1, "Chongqing", [("重庆市", "Chongqing", "渝中区", "Yuzhong", "500103")]),
    ("四川省", "四川", "西南", 83.7, "Sichuan", [("成都市", "Chengdu", "武侯区", "Wuhou", "510107")]),
    ("贵州省", "贵州", "西南", 38.6, "Guizhou", [("贵阳市", "Guiyang", "南明区", "Nanming", "520102")]),
    ("云南省", "云南", "西南", 47.2, "Yunnan", [("昆明市", "Kunming", "五华区", "Wuhua", "530102")]),
    ("西藏自治区", "西藏", "西南", 3.6, "Tibet", [("拉萨市", "Lhasa", "城关区", "Chengguan", "540102")]),
    ("陕西省", "陕西", "西北", 39.5, "Shaanxi", [("西安市", "Xi'an", "雁塔区", "Yanta", "610113")]),
    ("甘肃省", "甘肃", "西北", 25.0, "Gansu", [("兰州市", "Lanzhou", "城关区", "Chengguan", "620102")]),
    ("青海省", "青海", "西北", 5.9, "Qinghai", [("西宁市", "Xining", "城中区", "Chengzhong", "630103")]),
    ("宁夏回族自治区", "宁夏", "西北", 7.2, "Ningxia", [("银川市", "Yinchuan", "兴庆区", "Xingqing", "640104")]),
    ("新疆维吾尔自治区", "新疆", "西北", 25.9, "Xinjiang", [("乌鲁木齐市", "Urumqi", "天山区", "Tianshan", "650102")]),
    ("辽宁省", "辽宁", "东北", 42.6, "Liaoning", [("沈阳市", "Shenyang", "和平区", "Heping", "210102"),
                                              ("大连市", "Dalian", "中山区", "Zhongshan", "210202")]),
    ("吉林省", "吉林", "东北", 24.1, "Jilin", [("长春市", "Changchun", "朝阳区", "Chaoyang", "220104")]),
    ("黑龙江省", "黑龙江", "东北", 31.0, "Heilongjiang", [("哈尔滨市", "Harbin", "南岗区", "Nangang", "230103")]),
]
# The company is based in Shenzhen: its customer base over-weights Guangdong against population.
HOME_PROVINCE_AFFINITY = {"广东省": 3.0}

STREETS_ZH = ["科技园路", "人民路", "解放路", "中山路", "建设路", "和平路", "新华路", "文化路", "青年路", "学府路",
              "长江路", "黄河路", "滨海大道", "深南大道", "世纪大道", "朝阳路", "光明街", "友谊路", "胜利街", "幸福路"]
STREETS_EN = ["Keji Rd", "Renmin Rd", "Jiefang Rd", "Zhongshan Rd", "Jianshe Rd", "Heping Rd", "Xinhua Rd",
              "Wenhua Rd", "Qingnian Rd", "Xuefu Rd", "Changjiang Rd", "Huanghe Rd", "Binhai Ave", "Shennan Ave",
              "Century Ave", "Chaoyang Rd", "Guangming St", "Youyi Rd", "Shengli St", "Xingfu Rd"]

# Common surnames with their pinyin (for e-mail local parts); rough frequency weights.
SURNAMES: list[tuple[str, str, float]] = [
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.9), ("刘", "liu", 5.4), ("陈", "chen", 4.5),
    ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.0), ("吴", "wu", 2.0), ("周", "zhou", 1.9),
    ("徐", "xu", 1.5), ("孙", "sun", 1.5), ("马", "ma", 1.4), ("朱", "zhu", 1.3), ("胡", "hu", 1.2),
    ("郭", "guo", 1.1), ("何", "he", 1.1), ("林", "lin", 1.0), ("高", "gao", 1.0), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.8), ("梁", "liang", 0.8), ("谢", "xie", 0.7), ("宋", "song", 0.6), ("唐", "tang", 0.6),
    ("许", "xu", 0.6), ("韩", "han", 0.5), ("冯", "feng", 0.5), ("邓", "deng", 0.5), ("曹", "cao", 0.5),
    ("彭", "peng", 0.5), ("曾", "zeng", 0.5), ("肖", "xiao", 0.4), ("田", "tian", 0.4), ("董", "dong", 0.4),
    ("欧阳", "ouyang", 0.1), ("司马", "sima", 0.05),
]
GIVEN_MALE = list("伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林欢阳建国志文博")
GIVEN_FEMALE = list("芳娜敏静丽艳娟霞秀燕玲桂丹萍红琳雪梅婷颖倩洁佳慧莉月妍蕾薇琪晶欣怡悦")
FIRST_EN_MALE = ["James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Daniel",
                 "Matthew", "Andrew", "Kevin", "Brian", "Eric", "Jason", "Ryan", "Leo", "Henry", "Jack"]
FIRST_EN_FEMALE = ["Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Susan", "Jessica", "Sarah", "Karen",
                   "Lisa", "Nancy", "Emily", "Emma", "Olivia", "Grace", "Chloe", "Amy", "Anna", "Lucy", "Sophia"]
LAST_EN = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clark",
           "Lewis", "Walker", "Hall", "Allen", "Young", "King", "Wright", "Scott", "Green", "Baker", "Wang", "Li",
           "Zhang", "Chen", "Liu"]
EMAIL_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com", "foxmail.com"]
EMAIL_DOMAIN_W = [0.38, 0.22, 0.08, 0.08, 0.08, 0.06, 0.10]
MOBILE_PREFIXES = [130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159,
                   166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 191, 193, 195,
                   196, 197, 198, 199]

# Category, English, typical price (yuan), lognormal sigma, product-name stems (zh, en)
CATEGORIES: list[tuple[str, str, float, float, list[str], list[str]]] = [
    ("手机数码", "Phones & Digital", 900, 0.8, ["蓝牙耳机", "充电宝", "手机壳", "智能手表", "数据线", "平板电脑"],
     ["Bluetooth Earbuds", "Power Bank", "Phone Case", "Smart Watch", "USB Cable", "Tablet"]),
    ("家用电器", "Home Appliances", 700, 0.7, ["电饭煲", "空气炸锅", "吸尘器", "电风扇", "净水器", "咖啡机"],
     ["Rice Cooker", "Air Fryer", "Vacuum", "Electric Fan", "Water Purifier", "Coffee Machine"]),
    ("服装鞋帽", "Apparel & Shoes", 180, 0.6, ["T恤", "牛仔裤", "运动鞋", "羽绒服", "连衣裙", "帽子"],
     ["T-shirt", "Jeans", "Sneakers", "Down Jacket", "Dress", "Cap"]),
    ("美妆个护", "Beauty & Care", 160, 0.6, ["面霜", "口红", "洗发水", "防晒霜", "面膜", "香水"],
     ["Face Cream", "Lipstick", "Shampoo", "Sunscreen", "Face Mask", "Perfume"]),
    ("食品饮料", "Food & Drinks", 60, 0.5, ["坚果礼盒", "咖啡豆", "绿茶", "牛奶", "零食大礼包", "矿泉水"],
     ["Nut Gift Box", "Coffee Beans", "Green Tea", "Milk", "Snack Pack", "Mineral Water"]),
    ("母婴用品", "Mother & Baby", 150, 0.6, ["纸尿裤", "奶粉", "婴儿推车", "奶瓶", "儿童玩具", "湿巾"],
     ["Diapers", "Infant Formula", "Stroller", "Baby Bottle", "Kids Toy", "Wet Wipes"]),
    ("家居家装", "Home & Living", 120, 0.6, ["四件套", "收纳箱", "台灯", "枕头", "毛巾", "保温杯"],
     ["Bedding Set", "Storage Box", "Desk Lamp", "Pillow", "Towel", "Thermos"]),
    ("运动户外", "Sports & Outdoor", 220, 0.6, ["瑜伽垫", "跑步鞋", "帐篷", "登山包", "哑铃", "骑行头盔"],
     ["Yoga Mat", "Running Shoes", "Tent", "Hiking Backpack", "Dumbbells", "Cycling Helmet"]),
    ("图书文具", "Books & Stationery", 45, 0.4, ["笔记本", "中性笔", "小说", "绘本", "书包", "台历"],
     ["Notebook", "Gel Pen", "Novel", "Picture Book", "School Bag", "Desk Calendar"]),
    ("宠物用品", "Pet Supplies", 90, 0.5, ["猫粮", "狗粮", "猫砂", "宠物玩具", "宠物窝", "牵引绳"],
     ["Cat Food", "Dog Food", "Cat Litter", "Pet Toy", "Pet Bed", "Leash"]),
    ("珠宝配饰", "Jewelry & Accessories", 400, 0.9, ["银手链", "项链", "耳环", "手表", "太阳镜", "围巾"],
     ["Silver Bracelet", "Necklace", "Earrings", "Watch", "Sunglasses", "Scarf"]),
    ("生鲜水果", "Fresh Food", 70, 0.5, ["车厘子", "牛排", "三文鱼", "草莓", "大闸蟹", "鸡蛋"],
     ["Cherries", "Steak", "Salmon", "Strawberries", "Hairy Crab", "Eggs"]),
]
BRANDS_ZH = ["优品", "悦享", "臻选", "极客", "森活", "小确幸", "乐途", "简约", "初心", "鲜到家"]
BRANDS_EN = ["Youpin", "Joy", "Select", "Geek", "Senhuo", "Lucky", "Letu", "Simple", "Origin", "FreshHome"]

# Traffic / sales channels (zh, en). 自然流量 costs nothing.
CHANNELS = [("搜索广告", "Search Ads"), ("信息流", "Feed Ads"), ("社交媒体", "Social Media"), ("短信", "SMS"),
            ("直播", "Live Streaming"), ("自然流量", "Organic")]
PLATFORMS = ["APP", "web", "mini-program"]
PAYMENTS = [("微信支付", "WeChat Pay"), ("支付宝", "Alipay"), ("银行卡", "Bank Card"), ("花呗", "Huabei"),
            ("货到付款", "Cash on Delivery")]
PAYMENT_W = [0.45, 0.38, 0.08, 0.07, 0.02]
STATUSES = [("已支付", "paid"), ("已退款", "refunded"), ("已取消", "cancelled")]
GENDERS = [("男", "male"), ("女", "female")]
MEMBER_LEVELS = [("普通会员", "Regular"), ("银卡会员", "Silver"), ("金卡会员", "Gold"), ("钻石会员", "Diamond")]
TICKET_CHANNELS = [("电话", "phone"), ("在线客服", "online chat"), ("邮件", "email"), ("APP反馈", "in-app")]
APP_CHANNELS = [("APP", "APP"), ("小程序", "mini-program")]

# Ticket themes: (zh, en, base satisfaction shift, [zh texts], [en texts])
TICKET_THEMES: list[tuple[str, str, float, list[str], list[str]]] = [
    ("物流慢", "slow delivery", -0.9,
     ["快递一周了还没到，物流信息也不更新", "下单五天了还没发货，什么时候能到？", "物流太慢了，说好的次日达呢"],
     ["Parcel has not arrived after a week and tracking is not updated", "Ordered five days ago and still not shipped",
      "Delivery is far too slow, it was promised next day"]),
    ("质量问题", "quality issue", -1.0,
     ["收到的商品有破损，要求换货", "用了两天就坏了，质量太差", "颜色和图片严重不符，做工粗糙"],
     ["The item arrived damaged, I want an exchange", "It broke after two days, poor quality",
      "Colour does not match the photos and the finish is rough"]),
    ("退款慢", "slow refund", -1.2,
     ["申请退款十天了还没到账", "退货已签收，退款一直显示处理中", "退款流程太复杂，催了好几次"],
     ["Refund requested ten days ago and still not received", "Return was delivered but the refund is still pending",
      "The refund process is too complicated, I chased it several times"]),
    ("客服态度", "agent attitude", -1.5,
     ["客服态度很差，问题没解决就挂断了", "客服回复敷衍，一直让我等", "在线客服半天不回复，体验很差"],
     ["The agent was rude and hung up before solving it", "Agent replies were dismissive and kept me waiting",
      "Online chat did not answer for ages, terrible experience"]),
    ("商品咨询", "product question", 0.3,
     ["这款有没有大一号的尺码？", "请问这个支持全国联保吗？", "想了解一下会员折扣怎么用"],
     ["Is there a larger size of this item?", "Does this come with a national warranty?",
      "How do I use my member discount?"]),
    ("发票问题", "invoice", 0.0,
     ["需要开具增值税专用发票", "发票抬头填错了，能重开吗", "电子发票一直没收到"],
     ["I need a VAT special invoice", "The invoice title is wrong, can it be reissued?",
      "I never received the e-invoice"]),
    ("账户问题", "account", 0.0,
     ["手机号换了，怎么修改绑定", "账户无法登录，提示密码错误", "积分不见了，请帮忙查询"],
     ["I changed my phone number, how do I update it?", "Cannot log in, it says wrong password",
      "My points disappeared, please check"]),
]
TICKET_THEME_W = [0.24, 0.2, 0.14, 0.08, 0.18, 0.08, 0.08]

REVIEW_TEXTS: dict[int, tuple[list[str], list[str]]] = {
    5: (["非常满意，质量很好，物流也快，会回购", "超出预期，包装精美，推荐购买", "好评！性价比很高，家人都喜欢"],
        ["Very satisfied, great quality and fast delivery, will buy again", "Better than expected, lovely packaging",
         "Excellent value, the whole family loves it"]),
    4: (["整体不错，就是发货稍慢", "质量可以，价格合理", "挺好用的，比较满意"],
        ["Good overall, shipping a bit slow", "Decent quality at a fair price", "Works well, fairly happy"]),
    3: (["一般般，和描述差不多", "还行吧，没有特别惊喜", "中规中矩，价格有点高"],
        ["Average, about as described", "It is okay, nothing special", "Fine but a bit pricey"]),
    2: (["质量一般，有点失望", "物流太慢，包装也破了", "和图片不太一样，不推荐"],
        ["Mediocre quality, a bit disappointed", "Slow delivery and the box was damaged",
         "Not like the pictures, would not recommend"]),
    1: (["太差了，用一次就坏了，要求退款", "质量很差，客服也不理人，非常失望", "假货！完全不能用，差评"],
        ["Terrible, broke after one use, I want a refund", "Very poor quality and support ignored me",
         "Fake product, completely unusable"]),
}
SURVEY_TEXTS: dict[str, list[str]] = {
    "promoter": ["会推荐给朋友，购物体验很好", "商品丰富，价格实惠，服务贴心", "会员权益很实用，经常回购"],
    "passive": ["还可以，希望优惠再多一些", "体验一般，物流可以更快", "商品不错，但是客服响应慢"],
    "detractor": ["售后太难了，不会再来", "退款太慢，体验很差", "质量不稳定，客服态度差"],
}
